"""The inference workers: concurrent requests share forwards, each on its own model, and nothing waits forever.

Most tests run the wide worker alone (`single_thread_workers=0`), whose turns are deterministic; the last ones
cover how the one-thread workers share what waits."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from classifier.batching import InferenceStopped, InferenceWorkers
from classifier.checkpoint import Checkpoint
from classifier.model import build_model
from classifier.predict import Predictor
from classifier.synthetic import make_image
from common.waiting import wait_until


def tiny_predictor(classes: list[str], seed: int = 0) -> Predictor:
    """A real EfficientNet-Lite0 at 32 px with random weights: fast, and different for each seed."""
    torch.manual_seed(seed)
    return Predictor(
        Checkpoint.from_model(build_model("efficientnet_lite0", len(classes), pretrained=False), classes, 32)
    )


class GatedPredictor(Predictor):
    """Holds each forward until `gate` opens, so that a test can queue requests behind it."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__(checkpoint)
        self.inside = threading.Event()
        self.gate = threading.Event()

    def forward(self, batch):
        self.inside.set()
        assert self.gate.wait(30)
        return super().forward(batch)


class BrokenPredictor(Predictor):
    def __init__(self, checkpoint: Checkpoint, error: BaseException):
        super().__init__(checkpoint)
        self.error = error

    def forward(self, batch):
        raise self.error


def inputs(predictor: Predictor, count: int, first: int = 0) -> list[torch.Tensor]:
    return [predictor.prepare(make_image(("cat", "dog")[i % 2], first + i, size=48)) for i in range(count)]


@pytest.fixture
def inference():
    worker = InferenceWorkers(max_batch=16)
    yield worker
    worker.close()


def hold(inference: InferenceWorkers) -> GatedPredictor:
    """Keep the wide worker (these tests' only one) busy in a forward until the returned predictor's gate is set."""
    gated = GatedPredictor(tiny_predictor(["a", "b"]).checkpoint)
    inference.submit(gated, inputs(gated, 1)[0])
    assert gated.inside.wait(30)
    return gated


def wait_until_queued(inference: InferenceWorkers, count: int) -> None:
    wait_until(lambda: inference.queued() >= count, 30, f"{count} requests queued", interval=0.01)


def test_concurrent_requests_share_one_forward_with_the_results_of_a_direct_one(inference):
    predictor = tiny_predictor(["cat", "dog"])
    tensors = inputs(predictor, 8)
    gated = hold(inference)
    results = [None] * len(tensors)

    def request(index: int) -> None:
        results[index] = inference.predict(predictor, [tensors[index]])[0]

    threads = [threading.Thread(target=request, args=(i,)) for i in range(len(tensors))]
    for thread in threads:
        thread.start()
    wait_until_queued(inference, len(tensors))
    gated.gate.set()
    for thread in threads:
        thread.join(30)

    # The 8 requests waited behind one forward and then shared the next: 2 forwards for 9 images.
    assert inference.batch_sizes() == {1: 1, 8: 1}
    assert results == predictor.forward(torch.stack(tensors))
    for got, image in zip(results, tensors, strict=True):
        assert got == pytest.approx(predictor.forward(image.unsqueeze(0))[0], abs=1e-5)


def test_a_lone_request_is_not_held_back_and_batches_stay_within_the_maximum():
    inference = InferenceWorkers(max_batch=3)
    try:
        predictor = tiny_predictor(["cat", "dog"])
        assert inference.predict(predictor, inputs(predictor, 1)) == predictor.predict_batch(
            [make_image("cat", 0, size=48)]
        )
        assert inference.batch_sizes() == {1: 1}
        gated = hold(inference)
        futures = [inference.submit(predictor, tensor) for tensor in inputs(predictor, 7)]
        gated.gate.set()
        assert all(len(future.result(30)) == 2 for future in futures)
        assert inference.batch_sizes() == {1: 3, 3: 2}  # the lone one, the gated one, then 3 + 3 + 1
    finally:
        inference.close()


def test_the_images_of_one_request_share_forwards_of_at_most_the_maximum():
    inference = InferenceWorkers(max_batch=3)
    try:
        predictor = tiny_predictor(["cat", "dog"])
        tensors = inputs(predictor, 7)
        chunks = [tensors[0:3], tensors[3:6], tensors[6:]]
        direct = [row for chunk in chunks for row in predictor.forward(torch.stack(chunk))]
        assert inference.predict(predictor, tensors) == direct
        assert inference.batch_sizes() == {3: 2, 1: 1}
        assert inference.predict(predictor, tensors[:3]) == predictor.forward(torch.stack(tensors[:3]))
        assert inference.batch_sizes() == {3: 3, 1: 1}  # never split while the thread was idle
    finally:
        inference.close()


def test_each_request_keeps_the_model_it_was_submitted_with(inference):
    """A swap while requests wait: the requests made before it and those made after share the thread's next
    turn, yet each is answered by its own model, in one forward per model."""
    old, new = tiny_predictor(["cat", "dog"], seed=1), tiny_predictor(["cat", "dog", "rabbit"], seed=2)
    gated = hold(inference)
    before = [inference.submit(old, tensor) for tensor in inputs(old, 3)]
    after = [inference.submit(new, tensor) for tensor in inputs(new, 2)]
    gated.gate.set()

    assert [future.result(30) for future in before] == old.forward(torch.stack(inputs(old, 3)))
    assert [future.result(30) for future in after] == new.forward(torch.stack(inputs(new, 2)))
    assert inference.batch_sizes() == {1: 1, 3: 1, 2: 1}


def test_a_failing_forward_reaches_only_its_callers(inference):
    good = tiny_predictor(["cat", "dog"])
    broken = BrokenPredictor(good.checkpoint, ValueError("this model is broken"))
    gated = hold(inference)
    failing = [inference.submit(broken, tensor) for tensor in inputs(good, 2)]
    fine = [inference.submit(good, tensor) for tensor in inputs(good, 2)]
    gated.gate.set()

    for future in failing:
        with pytest.raises(ValueError, match="this model is broken"):
            future.result(30)
    assert [future.result(30) for future in fine] == good.forward(torch.stack(inputs(good, 2)))
    assert len(inference.predict(good, inputs(good, 1))[0]) == 2  # the thread serves on


def test_close_finishes_what_is_queued_and_refuses_what_comes_later():
    inference = InferenceWorkers()
    predictor = tiny_predictor(["cat", "dog"])
    gated = hold(inference)
    queued = inference.submit(predictor, inputs(predictor, 1)[0])
    closing = threading.Thread(target=inference.close)
    closing.start()
    gated.gate.set()
    closing.join(30)
    assert not closing.is_alive()
    assert len(queued.result(0)) == 2
    with pytest.raises(InferenceStopped):
        inference.submit(predictor, inputs(predictor, 1)[0])
    inference.close()  # again: nothing to do
    InferenceWorkers().close()  # never started


def test_a_thread_that_dies_fails_the_waiting_requests_instead_of_leaving_them_hanging():
    inference = InferenceWorkers()
    good = tiny_predictor(["cat", "dog"])
    dying = BrokenPredictor(good.checkpoint, SystemExit("killed"))
    gated = hold(inference)
    killer = inference.submit(dying, inputs(good, 1)[0])
    waiting = inference.submit(good, inputs(good, 1)[0])
    gated.gate.set()

    for future in (killer, waiting):
        with pytest.raises(InferenceStopped, match="failed"):
            future.result(30)
    with pytest.raises(InferenceStopped):
        inference.submit(good, inputs(good, 1)[0])


class Recording(Predictor):
    """Records each forward (batch size, torch threads, worker) and which workers were inside a forward each time one
    entered; each forward waits for a permit (`release`)."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__(checkpoint)
        self.permits = threading.Semaphore(0)
        self.forwards: list[tuple[int, int, str]] = []
        self.overlaps: list[tuple[str, ...]] = []
        self._inside: list[str] = []
        self._lock = threading.Lock()

    def release(self, forwards: int = 1_000_000) -> None:
        self.permits.release(forwards)

    def forward(self, batch):
        worker = threading.current_thread().name
        with self._lock:
            self.forwards.append((len(batch), torch.get_num_threads(), worker))
            self._inside.append(worker)
            self.overlaps.append(tuple(self._inside))
        try:
            assert self.permits.acquire(timeout=30)
            return super().forward(batch)
        finally:
            with self._lock:
                self._inside.remove(worker)

    def wait_for_forwards(self, count: int) -> None:
        wait_until(lambda: len(self.forwards) >= count, 30, f"{count} forwards started", interval=0.01)


@pytest.fixture
def workers():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app does: other threads use one
    pool = InferenceWorkers(max_batch=16, torch_threads=2, single_thread_workers=2)
    yield pool
    pool.close()
    torch.set_num_threads(before)


def test_the_workers_alone_run_with_the_torch_threads_they_are_given(workers):
    def threads_of_a_new_thread() -> int:
        found = []
        thread = threading.Thread(target=lambda: found.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return found[0]

    workers.start()
    assert torch.get_num_threads() == 1 and threads_of_a_new_thread() == 1  # the others keep theirs
    with pytest.raises(ValueError):
        InferenceWorkers(torch_threads=0)
    with pytest.raises(ValueError):
        InferenceWorkers(single_thread_workers=-1)


def test_a_lone_image_runs_on_the_wide_worker_and_waiting_ones_are_shared_by_the_others(workers):
    recording = Recording(tiny_predictor(["cat", "dog"]).checkpoint)
    lone = workers.submit(recording, inputs(recording, 1)[0])
    recording.wait_for_forwards(1)
    assert recording.forwards == [(1, 2, "inference-wide")]  # all its threads

    tensors = inputs(recording, 6, first=1)
    futures = [workers.submit(recording, tensor) for tensor in tensors]  # one request each, while the wide runs
    wait_until_queued(workers, 6)
    time.sleep(0.1)
    assert len(recording.forwards) == 1  # nothing runs beside the wide worker
    recording.release(1)
    recording.wait_for_forwards(3)
    # Each one-thread worker took its share of what waited: the first half of the 6, the second half of the rest.
    shared = recording.forwards[1:]
    assert sorted((size, threads) for size, threads, _ in shared) == [(2, 1), (3, 1)]
    assert {worker for _, _, worker in shared} == {"inference-0", "inference-1"}
    assert workers.queued() == 1
    recording.release()
    results = [future.result(30) for future in futures]
    assert len(lone.result(30)) == 2 and sum(size for size, _, _ in recording.forwards) == 7
    for got, tensor in zip(results, tensors, strict=True):
        assert got == pytest.approx(recording.forward(tensor.unsqueeze(0))[0], abs=1e-5)


def test_a_lone_image_beside_a_running_forward_takes_a_one_thread_worker(workers):
    recording = Recording(tiny_predictor(["cat", "dog"]).checkpoint)
    first = workers.submit_many(recording, inputs(recording, 2))  # two wait: one for each one-thread worker
    recording.wait_for_forwards(2)
    lone = workers.submit(recording, inputs(recording, 1, first=2)[0])
    time.sleep(0.1)
    assert workers.queued() == 1  # both one-thread workers are busy, and the wide one never runs beside them
    recording.release(1)  # one of them comes free while the other still runs: it takes the lone image
    recording.wait_for_forwards(3)
    recording.release()
    for future in [*first, lone]:
        assert len(future.result(30)) == 2
    assert [(size, threads) for size, threads, _ in recording.forwards] == [(1, 1)] * 3
    assert "inference-wide" not in {worker for _, _, worker in recording.forwards}


def test_the_wide_worker_never_runs_beside_another_forward(workers):
    recording = Recording(tiny_predictor(["cat", "dog"]).checkpoint)
    recording.release()
    tensors = inputs(recording, 3)
    sizes = [1 + (index + round_number) % 3 for index in range(6) for round_number in range(15)]

    def client(index: int) -> None:
        for round_number in range(15):
            time.sleep(0.001 * ((index + round_number) % 3))
            rows = workers.predict(recording, tensors[: 1 + (index + round_number) % 3])
            assert all(len(row) == 2 for row in rows)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sum(size for size, _, _ in recording.forwards) == sum(sizes)
    for inside in recording.overlaps:
        assert len(inside) <= 2
        assert "inference-wide" not in inside or inside == ("inference-wide",)

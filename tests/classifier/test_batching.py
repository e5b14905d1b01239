"""The inference thread: concurrent requests share forwards, each on its own model, and nothing waits forever."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from classifier.batching import InferenceStopped, InferenceThread
from classifier.checkpoint import Checkpoint
from classifier.model import build_model
from classifier.predict import Predictor
from classifier.synthetic import make_image


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
    worker = InferenceThread(max_batch=16)
    yield worker
    worker.close()


def hold(inference: InferenceThread) -> GatedPredictor:
    """Keep the inference thread busy in a forward until the returned predictor's gate is set."""
    gated = GatedPredictor(tiny_predictor(["a", "b"]).checkpoint)
    inference.submit(gated, inputs(gated, 1)[0])
    assert gated.inside.wait(30)
    return gated


def wait_until_queued(inference: InferenceThread, count: int) -> None:
    deadline = time.monotonic() + 30
    while inference.queued() < count:
        assert time.monotonic() < deadline, f"{inference.queued()} of {count} requests queued"
        time.sleep(0.01)


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
    inference = InferenceThread(max_batch=3)
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
    inference = InferenceThread(max_batch=3)
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
    inference = InferenceThread()
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
    InferenceThread().close()  # never started


def test_a_thread_that_dies_fails_the_waiting_requests_instead_of_leaving_them_hanging():
    inference = InferenceThread()
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


def test_the_inference_thread_alone_runs_with_the_torch_threads_it_is_given():
    seen = []

    class Recording(Predictor):
        def forward(self, batch):
            seen.append(torch.get_num_threads())
            return super().forward(batch)

    def threads_of_a_new_thread() -> int:
        found = []
        thread = threading.Thread(target=lambda: found.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return found[0]

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app does: other threads use one
    recording = Recording(tiny_predictor(["cat", "dog"]).checkpoint)
    inference = InferenceThread(torch_threads=2)
    try:
        inference.start()
        assert torch.get_num_threads() == 1 and threads_of_a_new_thread() == 1  # the others keep theirs
        inference.predict(recording, inputs(recording, 1))
        assert seen == [2]
    finally:
        inference.close()
        torch.set_num_threads(before)
    with pytest.raises(ValueError):
        InferenceThread(torch_threads=0)

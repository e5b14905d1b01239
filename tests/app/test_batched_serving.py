"""Concurrent REST requests share the forwards of the app's inference workers, with the results of a direct one."""

from __future__ import annotations

import threading

import httpx
import pytest
from app_testing import app_config, image_bytes, served

from app.application import create_app
from app.model_holder import ServedModel
from classifier.predict import Predictor
from common.waiting import wait_until


class FirstForwardHeld(Predictor):
    """Holds its first forward until `gate` opens; records the batch size of every forward."""

    def __init__(self, checkpoint):
        super().__init__(checkpoint)
        self.inside = threading.Event()
        self.gate = threading.Event()
        self.batches: list[int] = []

    def forward(self, batch):
        self.batches.append(len(batch))
        self.inside.set()
        assert self.gate.wait(30)
        return super().forward(batch)


@pytest.mark.parametrize("cpu_workers", [0, 2])
def test_concurrent_requests_are_batched_and_answered_as_by_the_bare_model(tmp_path, checkpoints, cpu_workers):
    config = app_config(tmp_path / "feedback", "--cpu-workers", str(cpu_workers))
    held = FirstForwardHeld(checkpoints["two"])
    bare = served(checkpoints["two"], "bare").predictor
    payloads = [image_bytes(("cat", "dog")[i % 2], 900 + i) for i in range(6)]
    answers: dict[int, dict] = {}
    app = create_app(config, None, model=ServedModel("held", "held", held, checkpoints["two"]))
    with app, app.serve(background=True, quiet=True) as server:

        def client(index: int) -> None:
            response = httpx.post(f"{server.url}api/v1/predict", content=payloads[index], timeout=60)
            answers[index] = response.json()["predictions"][0]

        try:
            first = threading.Thread(target=client, args=(0,))
            first.start()
            assert held.inside.wait(30)
            others = [threading.Thread(target=client, args=(i,)) for i in range(1, len(payloads))]
            for thread in others:
                thread.start()
            wait_until(lambda: app.inference.queued() >= len(others), 30, "the others to queue", interval=0.01)
            held.gate.set()
            for thread in [first, *others]:
                thread.join(60)
        finally:
            held.gate.set()

    if cpu_workers == 0:
        assert held.batches == [1, len(others)]  # 6 requests, 2 forwards
    else:  # the lone first on all threads, then the 5 waiting shared by the 2 one-thread workers: 3, 1, 1
        assert held.batches[0] == 1 and max(held.batches[1:]) == 3 and sum(held.batches) == 6
    for index, data in enumerate(payloads):
        expected = bare.predict(app.service.decode(data))
        assert answers[index]["probabilities"] == pytest.approx(expected, abs=1e-5)
        assert answers[index]["model_id"] == "held"


def test_stopped_inference_workers_answer_503_at_once(local_app):
    app, url = local_app
    app.inference.close()
    response = httpx.post(f"{url}api/v1/predict", content=image_bytes("cat", 950), timeout=30)
    assert response.status_code == 503 and "stopped" in response.json()["detail"]

"""Swapping the served model while requests run: in-flight requests finish on the old model, none fail."""

from __future__ import annotations

import threading
import time

from app_testing import image_bytes, served

from app.feedback_store import FeedbackStore
from app.model_holder import ModelHolder
from app.service import ClassifierService
from classifier.predict import Predictor


class GatedPredictor(Predictor):
    """A real predictor that holds each request at a gate while it prepares its image (after the request took its
    model snapshot, before the forward), so a test can swap models while the request is inside."""

    def __init__(self, checkpoint):
        super().__init__(checkpoint)
        self.inside = threading.Event()
        self.gate = threading.Event()

    def prepare(self, image):
        self.inside.set()
        assert self.gate.wait(10)
        return super().prepare(image)


def test_request_in_flight_finishes_on_the_old_model(tmp_path, checkpoints):
    old = served(checkpoints["two"], "old")
    gated = GatedPredictor(old.checkpoint)
    holder = ModelHolder()
    holder.swap(type(old)(old.model_id, old.name, gated, old.checkpoint))
    service = ClassifierService(holder, FeedbackStore(tmp_path))
    data = image_bytes("cat", 40)
    results = {}
    in_flight = threading.Thread(target=lambda: results.setdefault("old", service.predict(data)))
    in_flight.start()
    assert gated.inside.wait(10)

    previous = holder.swap(served(checkpoints["three"], "new"))
    results["new"] = service.predict(data)  # a request arriving after the swap gets the new model
    gated.gate.set()
    in_flight.join()

    assert previous.model_id == "old"
    assert results["old"].model_id == "old" and set(results["old"].probabilities) == {"cat", "dog"}
    assert results["new"].model_id == "new" and set(results["new"].probabilities) == {"cat", "dog", "rabbit"}
    assert [model_id for model_id, _ in holder.swaps()] == ["old", "new"]


def test_no_request_fails_while_models_swap_under_load(tmp_path, checkpoints):
    models = [served(checkpoints["two"], "two"), served(checkpoints["three"], "three")]
    classes = {"two": {"cat", "dog"}, "three": {"cat", "dog", "rabbit"}}
    holder = ModelHolder()
    holder.swap(models[0])
    service = ClassifierService(holder, FeedbackStore(tmp_path))
    payloads = [image_bytes(name, 50 + i) for i, name in enumerate(["cat", "dog", "rabbit", "cat"])]
    stop = threading.Event()
    results, errors = [], []

    def client(worker: int):
        while not stop.is_set():
            try:
                results.append(service.predict(payloads[worker % len(payloads)]))
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for swap in range(12):
        time.sleep(0.1)
        holder.swap(models[(swap + 1) % 2])
    stop.set()
    for thread in threads:
        thread.join()

    assert errors == []
    assert {result.model_id for result in results} == {"two", "three"}
    for result in results:
        assert set(result.probabilities) == classes[result.model_id]

"""What the `pets` endpoint answers, free of ClearML: the bytes of one image in, the app's answer out.

Models are kept by id in one process-wide cache (a rollback target is usually still here), loaded once however
many clearml-serving processor objects ask for them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from classifier.checkpoint import Checkpoint
from classifier.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, finish_decode, open_image
from classifier.predict import Predictor

MAX_MODELS = 3  # production, the one before it (a rollback target) and one being preloaded


class ModelCache:
    """Predictors by model id, the least recently used dropped beyond ``max_models``."""

    def __init__(self, max_models: int = MAX_MODELS):
        self.max_models = max_models
        self._models: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._models

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def get(self, model_id: str, weights: str | Path) -> Predictor:
        """The predictor of ``model_id``, loaded from ``weights`` unless it is here already."""
        with self._lock:
            found = self._models.get(model_id)
            if found is not None:
                self._models.move_to_end(model_id)
                return found
        predictor = Predictor(Checkpoint.load(weights))  # outside the lock: requests on other models go on
        with self._lock:
            predictor = self._models.setdefault(model_id, predictor)
            self._models.move_to_end(model_id)
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        return predictor


MODELS = ModelCache()


def decode(body) -> object:
    """The RGB image of a request body (raw image bytes), checked as the app checks uploads; InvalidImage (a
    ValueError, which clearml-serving answers 422 with the message) otherwise."""
    if isinstance(body, str):
        body = body.encode("latin-1")
    if not isinstance(body, (bytes, bytearray)):
        raise ValueError("Send one image as the raw request body (Content-Type: application/octet-stream).")
    image = open_image(
        bytes(body), max_bytes=DEFAULT_MAX_BYTES, max_pixels=DEFAULT_MAX_PIXELS, min_side=DEFAULT_MIN_SIDE
    )
    return finish_decode(image)


def answer(predictor: Predictor, model_id: str, image) -> dict:
    """The app's prediction fields: the label, every class's probability, the model that answered."""
    probabilities = predictor.predict(image)
    label = max(probabilities, key=probabilities.__getitem__)
    return {"label": label, "probabilities": probabilities, "model_id": model_id}

"""What the app does, free of Gradio and ClearML: validate an upload, predict, store feedback.

Every upload is decoded by `classifier.images.decode_image` before anything else happens, so bad input is
refused with `InvalidImage` (a message for the user) and never reaches the model or the feedback store.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

from PIL import Image

from app.feedback_store import AddResult, FeedbackStore
from app.labels import normalize_label
from app.model_holder import ModelHolder
from classifier.images import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    decode_image,
    sha256_bytes,
)

_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}


@dataclass(frozen=True)
class Prediction:
    sha256: str
    probabilities: dict[str, float]
    model_id: str
    latency_ms: float

    @property
    def top(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE


class ClassifierService:
    def __init__(self, holder: ModelHolder, store: FeedbackStore, limits: Limits = Limits()):
        self.holder = holder
        self.store = store
        self.limits = limits

    def decode(self, data: bytes) -> Image.Image:
        return decode_image(
            data,
            max_bytes=self.limits.max_bytes,
            max_pixels=self.limits.max_pixels,
            min_side=self.limits.min_side,
        )

    def predict(self, data: bytes) -> Prediction:
        started = time.perf_counter()
        image = self.decode(data)
        served = self.holder.require()
        probabilities = served.predictor.predict(image)
        return Prediction(
            sha256=sha256_bytes(data),
            probabilities={name: float(p) for name, p in probabilities.items()},
            model_id=served.model_id,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )

    def submit_feedback(
        self,
        data: bytes,
        label: str,
        *,
        prediction: Prediction | None = None,
        original_name: str | None = None,
    ) -> AddResult:
        """Store `data` with its corrected `label` and the prediction the user saw (made now if not given)."""
        label = normalize_label(label)
        if prediction is None or prediction.sha256 != sha256_bytes(data):
            prediction = self.predict(data)
        else:
            self.decode(data)  # the bytes come from the client again: validate them again
        return self.store.add(
            data,
            label=label,
            ext=_EXTENSIONS[_format_of(data)],
            prediction=prediction.top,
            probabilities=prediction.probabilities,
            model_id=prediction.model_id,
            original_name=original_name,
        )

    def label_choices(self) -> list[str]:
        """Classes of the served model first, then labels users have added."""
        served = self.holder.current()
        known = served.classes if served is not None else []
        return known + [label for label in self.store.labels() if label not in known]


def _format_of(data: bytes) -> str:
    # Header only; the data was fully decoded by `decode` already.
    with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
        return image.format

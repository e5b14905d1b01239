"""What the app does, free of Gradio and ClearML: validate an upload, predict, store feedback.

Every upload is decoded once, by `classifier.images`, before anything else happens: its header is checked
(size, pixels, sides), the memory its decode will take is reserved from a budget shared by all requests, and
only then are its pixels decoded. Bad input is refused with `InvalidImage`, a bound with `Refused` (messages for
the user), and neither reaches the model or the feedback store.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from app.feedback_store import AddResult, FeedbackStore
from app.guard import LabelPolicy, MemoryBudget, RateLimiter, Refused
from app.labels import normalize_label
from app.model_holder import ModelHolder, ServedModel
from app.quality import PredictionLog
from app.review import ReviewItem, ReviewQueue
from classifier.batching import InferenceWorkers
from classifier.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    InvalidImage,
    decode_bytes,
    finish_decode,
    open_image,
    sha256_bytes,
)

_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}
PREVIEW_SIDE = 512
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Prediction:
    sha256: str
    probabilities: dict[str, float]
    model_id: str
    latency_ms: float
    format: str = "PNG"  # of the upload, read from the one decode
    id: int | None = None  # in the prediction log

    @property
    def top(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    max_images: int = 16  # per request
    max_request_pixels: int = DEFAULT_MAX_PIXELS  # all images of one request together
    decode_budget_bytes: int = 1 << 30  # the decodes of all requests in flight together


@dataclass
class Guards:
    """The per-client bounds on feedback."""

    feedback_rate: RateLimiter = field(default_factory=lambda: RateLimiter(30))
    labels: LabelPolicy = field(default_factory=LabelPolicy)


class ClassifierService:
    def __init__(
        self,
        holder: ModelHolder,
        store: FeedbackStore,
        limits: Limits = Limits(),
        *,
        guards: Guards | None = None,
        log: PredictionLog | None = None,
        review: ReviewQueue | None = None,
        inference: InferenceWorkers | None = None,
        on_prediction: Callable[[Prediction], None] | None = None,
    ):
        self.holder = holder
        self.store = store
        self.limits = limits
        self.guards = guards or Guards()
        self.log = log
        self.review = review  # None: uploads are not kept (no consent)
        self.inference = inference or InferenceWorkers()  # run every forward, batching concurrent requests
        self.on_prediction = on_prediction  # e.g. the app's Prometheus counters
        self.budget = MemoryBudget(limits.decode_budget_bytes)
        self._recent: OrderedDict[int, Prediction] = OrderedDict()  # by log id, for feedback that names one
        self._recent_lock = threading.Lock()
        self._labels_lock = threading.Lock()

    # -- predicting ------------------------------------------------------------------------------------------

    def decode(self, data: bytes) -> Image.Image:
        """The RGB image of `data` (for tests and tools; requests use `predict`, which decodes under the budget)."""
        return finish_decode(self._open(data))

    def predict(self, data: bytes, client: str | None = None) -> Prediction:
        return self.predict_many([data], client)[0]

    def predict_with_preview(self, data: bytes, client: str | None = None) -> tuple[Prediction, Image.Image]:
        """The prediction for `data` and the image as the model sees it, at most PREVIEW_SIDE pixels a side."""
        return self._predict([data], client, previews=True)[0]

    def predict_many(self, uploads: list[bytes], client: str | None = None) -> list[Prediction]:
        """Predictions for several images of one request; the request's images are bounded in number and in
        pixels together, and each is checked before any is decoded."""
        return [prediction for prediction, _ in self._predict(uploads, client, previews=False)]

    def _predict(
        self, uploads: list[bytes], client: str | None, previews: bool
    ) -> list[tuple[Prediction, Image.Image | None]]:
        if not uploads:
            raise InvalidImage("No image was sent.")
        if len(uploads) > self.limits.max_images:
            raise InvalidImage(f"{len(uploads)} images were sent; at most {self.limits.max_images} per request.")
        started = time.perf_counter()
        opened = [self._open(data) for data in uploads]
        pixels = sum(image.size[0] * image.size[1] for image in opened)
        if pixels > self.limits.max_request_pixels:
            raise InvalidImage(
                f"The images have {pixels:,} pixels together; the limit is {self.limits.max_request_pixels:,}."
            )
        served = self.holder.require()  # the request's snapshot: a swap from here on does not change its model
        tensors, shown = [], []
        for image in opened:
            tensor, preview = self._prepare(served, image)
            tensors.append(tensor)
            shown.append(preview if previews else None)
        # Submitted together, so the request's images share forwards (with those of concurrent requests, too).
        rows = self.inference.predict(served.predictor, tensors)
        return [
            (self._record(served, data, image, probabilities, started, client), preview)
            for data, image, probabilities, preview in zip(uploads, opened, rows, shown, strict=True)
        ]

    def _open(self, data: bytes) -> Image.Image:
        return open_image(
            data, max_bytes=self.limits.max_bytes, max_pixels=self.limits.max_pixels, min_side=self.limits.min_side
        )

    def _prepare(self, served: ServedModel, opened: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The model input for `opened` and its preview, decoded under the memory budget: the reservation ends
        once the full-size pixels are released (the input tensor and the preview are small)."""
        with self.budget.reserve(decode_bytes(opened)):
            image = finish_decode(opened)  # releases the source pixels of `opened` once converted
            tensor = served.predictor.prepare(image)
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))  # in place: the full-size pixels are released here
        return tensor, image

    def _record(
        self,
        served: ServedModel,
        data: bytes,
        opened: Image.Image,
        probabilities: dict[str, float],
        started: float,
        client: str | None,
    ) -> Prediction:
        probabilities = {name: float(p) for name, p in probabilities.items()}
        sha256 = sha256_bytes(data)
        prediction_id = None
        if self.log is not None:
            prediction_id = self.log.record_prediction(served.model_id, probabilities, sha256, client)
        prediction = Prediction(
            sha256=sha256,
            probabilities=probabilities,
            model_id=served.model_id,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            format=opened.format,
            id=prediction_id,
        )
        self._remember(prediction)
        if self.on_prediction is not None:
            self.on_prediction(prediction)
        if self.review is not None:
            self.review.offer(
                data,
                sha256=sha256,
                probabilities=probabilities,
                model_id=served.model_id,
                prediction_id=prediction_id,
                image_format=opened.format,
                extension=_EXTENSIONS[opened.format],
            )
        return prediction

    def _remember(self, prediction: Prediction) -> None:
        if prediction.id is None:
            return
        with self._recent_lock:
            self._recent[prediction.id] = prediction
            while len(self._recent) > 10_000:
                self._recent.popitem(last=False)

    def recent_prediction(self, prediction_id: int) -> Prediction | None:
        with self._recent_lock:
            return self._recent.get(prediction_id)

    # -- feedback --------------------------------------------------------------------------------------------

    def submit_feedback(
        self,
        data: bytes,
        label: str,
        *,
        prediction: Prediction | None = None,
        original_name: str | None = None,
        client: str | None = None,
    ) -> AddResult:
        """Store `data` with its corrected `label` and the prediction the user saw (made now if not given, or if
        it was made for other bytes). Bounded per client: a rate limit, and limits on new labels."""
        client = client or ANONYMOUS
        label = normalize_label(label)
        self.guards.feedback_rate.check(client)
        if prediction is None or prediction.sha256 != sha256_bytes(data):
            prediction = self.predict(data, client)
        # Otherwise the same bytes were decoded and validated when `prediction` was made: not decoded again.
        with self._labels_lock:  # checking and storing a new label is one step, or a flood could slip past
            known = set(self.holder.require().classes) | set(prediction.probabilities)
            self.guards.labels.check(label, known, self.pending_new_labels(), client)
            result = self.store.add(
                data,
                label=label,
                ext=_EXTENSIONS[prediction.format],
                prediction=prediction.top,
                probabilities=prediction.probabilities,
                model_id=prediction.model_id,
                original_name=original_name,
                client=client,
            )
        if result.created and self.log is not None and prediction.id is not None:
            self.log.record_feedback(prediction.id, label, known=label in prediction.probabilities)
        return result

    def answer_review(self, item: ReviewItem, label: str, client: str | None = None) -> AddResult:
        """A reviewer's label for a kept upload: ordinary feedback on the prediction it was kept for."""
        data = self.review.image_path(item).read_bytes()
        prediction = Prediction(
            sha256=item.sha256,
            probabilities=item.probabilities,
            model_id=item.model_id,
            latency_ms=0.0,
            format=item.format,
            id=item.prediction_id,
        )
        result = self.submit_feedback(data, label, prediction=prediction, client=client)
        self.review.remove(item.sha256)
        return result

    def pending_new_labels(self) -> dict[str, set[str]]:
        """Labels of stored feedback that the served model does not know yet, with the clients that gave them."""
        served = self.holder.current()
        known = set(served.classes) if served is not None else set()
        pending: dict[str, set[str]] = {}
        for item in self.store.items():
            if item.label not in known:
                pending.setdefault(item.label, set()).add(item.client or ANONYMOUS)
        return pending

    def label_choices(self) -> list[str]:
        """Classes of the served model first, then labels users have added."""
        served = self.holder.current()
        known = served.classes if served is not None else []
        return known + [label for label in self.store.labels() if label not in known]


USER_ERRORS = (InvalidImage, Refused)

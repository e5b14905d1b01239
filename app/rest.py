"""The app's plain REST API (JSON over HTTP), served beside the Gradio UI by the same process.

- `POST /api/v1/predict`: one image as the raw request body, or one or more images as multipart form fields
  (any field name) -> `{"predictions": [{label, probabilities, model_id, latency_ms, prediction_id, sha256}]}`
- `POST /api/v1/feedback`: an image (raw body or a multipart `image` field) and `label` (query or form field),
  optionally the `prediction_id` the label answers -> what was stored
- `GET /api/v1/model`: the model being served; `GET /api/v1/quality`: its live figures; `GET /healthz`
Same validation and limits as the UI (the same `ClassifierService`); errors are JSON `{"detail": message}` with
400 (bad image), 413 (too large), 422 (bad label), 429 (a rate or label limit), 503 (no model yet, busy, stopping).
When a login is configured, every route but `/healthz` takes it as HTTP Basic credentials.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.guard import Refused
from app.labels import InvalidLabel
from app.model_holder import NoModelYet
from app.quality import to_json
from app.service import ClassifierService, Prediction
from classifier.batching import InferenceStopped
from classifier.images import InvalidImage

_BASIC = HTTPBasic(auto_error=False)
_IMAGE_BODY = {
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
    },
    "required": True,
}
_FEEDBACK_BODY = {
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "label"],
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "label": {"type": "string"},
                    "prediction_id": {"type": "integer"},
                },
            }
        },
    },
    "required": True,
}


class BodyBudget:
    """Request bodies held in memory at once, in bytes: a request reserves its declared length (or the largest
    body allowed, when it declares none) before its body is read, and keeps it until it is answered. Runs on
    the event loop, so a waiting request costs no thread."""

    def __init__(self, limit_bytes: int, wait_s: float = 30.0):
        self.limit_bytes = limit_bytes
        self.wait_s = wait_s
        self._used = 0
        self._condition: anyio.Condition | None = None

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        if size > self.limit_bytes:
            raise Refused(f"The request body is {size / 2**20:.1f} MiB; at most {self.limit_bytes / 2**20:.1f}.", 413)
        if self._condition is None:
            self._condition = anyio.Condition()
        async with self._condition:
            with anyio.move_on_after(self.wait_s):
                while self._used + size > self.limit_bytes:
                    await self._condition.wait()
            if self._used + size > self.limit_bytes:
                raise Refused("The server is busy receiving other uploads; try again in a moment.", 503)
            self._used += size
        try:
            yield
        finally:
            async with self._condition:
                self._used -= size
                self._condition.notify_all()


def prediction_json(prediction: Prediction) -> dict:
    return {
        "label": prediction.top,
        "probabilities": prediction.probabilities,
        "model_id": prediction.model_id,
        "latency_ms": round(prediction.latency_ms, 2),
        "prediction_id": prediction.id,
        "sha256": prediction.sha256,
    }


class RestApi:
    def __init__(
        self,
        service: ClassifierService,
        *,
        login: tuple[str, str] | None,
        concurrency: int,
        client_of: Callable[[Request, str | None], str],
        body_budget_bytes: int = 256 * 2**20,
        metrics: Callable[[], bytes] | None = None,
    ):
        self.service = service
        self.metrics = metrics  # the Prometheus text of GET /metrics
        self.bodies = BodyBudget(body_budget_bytes)
        self.login = login
        self.client_of = client_of
        self.limiter = anyio.CapacityLimiter(concurrency)

    def install(self, app: FastAPI) -> None:
        """Add the routes to `app`, and the JSON errors for the service's refusals."""
        app.include_router(self.router())
        app.add_exception_handler(InvalidImage, _error(400))
        app.add_exception_handler(InvalidLabel, _error(422))
        app.add_exception_handler(NoModelYet, _error(503))
        app.add_exception_handler(InferenceStopped, _error(503))
        app.add_exception_handler(Refused, lambda request, exc: JSONResponse({"detail": str(exc)}, exc.status))

    def router(self) -> APIRouter:
        router = APIRouter()
        user = Depends(self.user)

        @router.get("/healthz", tags=["health"])
        def healthz() -> dict:
            """Always 200 while the process serves; says whether a model is loaded."""
            served = self.service.holder.current()
            return {"status": "ok", "model_id": served.model_id if served is not None else None}

        @router.post("/api/v1/predict", tags=["predict"], openapi_extra={"requestBody": _IMAGE_BODY})
        async def predict(request: Request, username: str | None = user) -> dict:
            """Classify one image (the raw body) or several (multipart form fields, in order)."""
            async with self.bodies.reserve(self._body_size(request)):
                uploads, _ = await self._read(request)
                client = self.client_of(request, username)
                predictions = await anyio.to_thread.run_sync(
                    self.service.predict_many, [data for _, data in uploads], client, limiter=self.limiter
                )
            return {"predictions": [prediction_json(p) for p in predictions]}

        @router.post("/api/v1/feedback", tags=["feedback"], openapi_extra={"requestBody": _FEEDBACK_BODY})
        async def feedback(request: Request, username: str | None = user) -> dict:
            """Store the image with its right `label`: a class of the model or a new one. `prediction_id` (from
            /api/v1/predict) links the label to the prediction it answers."""
            async with self.bodies.reserve(self._body_size(request)):
                return await self._feedback(request, username)

        @router.get("/api/v1/model", tags=["model"])
        def model(username: str | None = user) -> dict:
            """The model being served: id, name, classes, when it was loaded, its training metrics."""
            served = self.service.holder.require()
            checkpoint = served.checkpoint
            return {
                "model_id": served.model_id,
                "name": served.name,
                "classes": served.classes,
                "loaded_at": served.loaded_at,
                "backbone": checkpoint.backbone,
                "dataset_id": checkpoint.dataset_id,
                "metrics": checkpoint.metrics,
            }

        @router.get("/api/v1/quality", tags=["model"])
        def quality(username: str | None = user) -> dict:
            """Live figures of every model this app has served, from its predictions and their feedback."""
            log = self.service.log
            if log is None:
                return {"models": []}
            return {"models": [to_json(log.quality(model_id)) for model_id in log.models()]}

        if self.metrics is not None:

            @router.get("/metrics", include_in_schema=False)
            def metrics(username: str | None = user) -> Response:
                """Prometheus metrics (`app.metrics`); behind the login like every route but /healthz."""
                return Response(self.metrics(), media_type=CONTENT_TYPE_LATEST)

        return router

    async def user(self, credentials: HTTPBasicCredentials | None = Depends(_BASIC)) -> str | None:  # noqa: B008
        """The signed-in user (HTTP Basic), None when no login is configured; 401 otherwise."""
        if self.login is None:
            return None
        if credentials is not None:
            username_ok = secrets.compare_digest(credentials.username.encode(), self.login[0].encode())
            password_ok = secrets.compare_digest(credentials.password.encode(), self.login[1].encode())
            if username_ok and password_ok:
                return credentials.username
        raise HTTPException(401, "Sign in (HTTP Basic).", headers={"WWW-Authenticate": "Basic"})

    async def _feedback(self, request: Request, username: str | None) -> dict:
        uploads, fields = await self._read(request)
        fields = {**request.query_params, **fields}
        if len(uploads) != 1:
            raise InvalidImage(f"Send exactly one image with feedback, not {len(uploads)}.")
        (name, data), label = uploads[0], fields.get("label", "")
        prediction = None
        if fields.get("prediction_id"):
            try:
                prediction = self.service.recent_prediction(int(fields["prediction_id"]))
            except ValueError:
                raise HTTPException(422, "prediction_id must be an integer.") from None
        result = await anyio.to_thread.run_sync(
            lambda: self.service.submit_feedback(
                data,
                label,
                prediction=prediction,
                original_name=name,
                client=self.client_of(request, username),
            ),
            limiter=self.limiter,
        )
        item = result.item
        return {
            "stored": result.created,
            "label": item.label,
            "sha256": item.sha256,
            "prediction": item.prediction,
            "model_id": item.model_id,
        }

    def _body_size(self, request: Request) -> int:
        """The bytes to reserve for the body of `request`: its declared length, else the largest allowed."""
        declared = request.headers.get("content-length", "")
        return int(declared) if declared.isdigit() else self._max_body()

    def _max_body(self) -> int:
        return self.service.limits.max_bytes * self.service.limits.max_images + 64 * 1024

    async def _read(self, request: Request) -> tuple[list[tuple[str | None, bytes]], dict[str, str]]:
        """The images and form fields of `request`, reading at most what the limits allow."""
        limits = self.service.limits
        body = await _read_body(request, self._max_body())
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return [(None, body)], {}

        async def replay():
            yield body

        parser = MultiPartParser(request.headers, replay(), max_files=limits.max_images, max_fields=8)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise InvalidImage(f"The multipart body is malformed: {exc.message}") from None
        uploads, fields = [], {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append((value.filename, await value.read()))
                await value.close()
            else:
                fields[key] = value
        return uploads, fields


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"The request body is {int(declared) / 2**20:.1f} MiB; at most {limit / 2**20:.1f}.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"The request body is over {limit / 2**20:.1f} MiB.")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int):
    def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status)

    return handle

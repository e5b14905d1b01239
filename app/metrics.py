"""Prometheus metrics of the app at `GET /metrics` (prometheus-client's text format, behind the app's login when
one is configured), for a cluster to scrape.

- `classifier_app_requests_total{route,method,status}` and `classifier_app_request_seconds{route}`: every HTTP
  request, by its route template (`/api/v1/predict`, Gradio's own routes; `other` for paths no route matched),
  so the label set stays bounded whatever paths clients send;
- `classifier_app_predictions_total{model_id,label}`: predictions by model and predicted class;
- `classifier_app_served_model{model_id}` (1 for the model now served), `classifier_app_feedback{model_id}`
  and `classifier_app_live_agreement{model_id}`: read from the prediction log when scraped.

Each App has its own registry, so several apps in one process (tests) count apart.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from app.model_holder import ModelHolder
from app.quality import PredictionLog

MAX_MODELS_REPORTED = 20  # the most recently used models of the log: their ids are label values


class AppMetrics:
    def __init__(self, holder: ModelHolder, log: PredictionLog | None):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "classifier_app_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "classifier_app_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.predictions = Counter(
            "classifier_app_predictions", "Predictions served", ["model_id", "label"], registry=self.registry
        )
        self.registry.register(_LiveCollector(holder, log))

    def predicted(self, model_id: str, label: str) -> None:
        self.predictions.labels(model_id, label).inc()

    def text(self) -> bytes:
        """The Prometheus text format of every metric (what `GET /metrics` answers)."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request (``app.add_middleware(RequestMetrics, metrics=m)``)."""

    def __init__(self, app, metrics: AppMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}  # an exception before the response started

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_label(scope)  # set by the router on this scope once it matched
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_label(scope) -> str:
    route = getattr(scope.get("route"), "path", None)
    if route is None:
        return "other"
    return route or "/"


class _LiveCollector:
    """The served model and each model's live agreement with feedback, read at scrape time."""

    def __init__(self, holder: ModelHolder, log: PredictionLog | None):
        self.holder, self.log = holder, log

    def collect(self):
        served = GaugeMetricFamily("classifier_app_served_model", "1 for the model being served", labels=["model_id"])
        current = self.holder.current()
        if current is not None:
            served.add_metric([current.model_id], 1)
        yield served
        feedback = GaugeMetricFamily(
            "classifier_app_feedback", "Logged predictions with feedback, by model", labels=["model_id"]
        )
        agreement = GaugeMetricFamily(
            "classifier_app_live_agreement",
            "Share of logged feedback that agreed with the prediction, by model",
            labels=["model_id"],
        )
        for model_id in self.log.models()[:MAX_MODELS_REPORTED] if self.log is not None else []:
            agreed = self.log.agreement(model_id)  # one query, not the whole quality report
            feedback.add_metric([model_id], agreed.feedback)
            if agreed.rate is not None:
                agreement.add_metric([model_id], agreed.rate)
        yield feedback
        yield agreement

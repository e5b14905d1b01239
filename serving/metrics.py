"""Prometheus metrics of the serving path, from inside clearml-serving's inference process (which has no
/metrics of its own without its Kafka statistics service): served on ``127.0.0.1:$CLASSIFIER_SERVING_METRICS_PORT``
(``CLASSIFIER_SERVING_METRICS_HOST`` to bind another address, e.g. ``0.0.0.0`` in a pod) when that is set.

- `classifier_serving_requests_total{outcome}`: `answered`, or `refused` (not an image this system accepts);
- `classifier_serving_predictions_total{model_id,label}` and `classifier_serving_inference_seconds`;
- `classifier_serving_model{model_id}`: 1 for the model the endpoint answers with.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PORT_ENV = "CLASSIFIER_SERVING_METRICS_PORT"
HOST_ENV = "CLASSIFIER_SERVING_METRICS_HOST"

REGISTRY = CollectorRegistry()
REQUESTS = Counter("classifier_serving_requests", "Requests to the pets endpoint", ["outcome"], registry=REGISTRY)
PREDICTIONS = Counter("classifier_serving_predictions", "Predictions served", ["model_id", "label"], registry=REGISTRY)
INFERENCE = Histogram("classifier_serving_inference_seconds", "Decode and forward of one image", registry=REGISTRY)
MODEL = Gauge("classifier_serving_model", "1 for the model the endpoint answers with", ["model_id"], registry=REGISTRY)
_started = threading.Lock()
_serving: list = []


def start_exporter() -> None:
    """Serve the metrics if ``CLASSIFIER_SERVING_METRICS_PORT`` is set (once per process)."""
    port = os.environ.get(PORT_ENV, "").strip()
    with _started:
        if port and not _serving:
            _serving.append(start_http_server(int(port), addr=os.environ.get(HOST_ENV, "127.0.0.1"), registry=REGISTRY))


def serving_model(model_id: str, previous: str | None) -> None:
    if previous:
        MODEL.remove(previous)
    MODEL.labels(model_id).set(1)

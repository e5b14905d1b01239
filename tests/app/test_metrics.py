"""`GET /metrics`: what a Prometheus scrape of the app reads, parsed with prometheus-client's own parser."""

from __future__ import annotations

import httpx
from app_testing import image_bytes
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{url}metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_requests_latency_predictions_agreement_and_the_served_model(local_app):
    _, url = local_app
    before = scrape(url)
    assert before[("classifier_app_served_model", (("model_id", "model-two"),))] == 1
    predictions = []
    for index, name in enumerate(["cat", "dog", "cat"]):
        answer = httpx.post(f"{url}api/v1/predict", content=image_bytes(name, 80 + index)).json()
        predictions.append(answer["predictions"][0])
    assert httpx.post(f"{url}api/v1/predict", content=b"not an image").status_code == 400
    first = predictions[0]
    feedback = {"label": "dog", "prediction_id": str(first["prediction_id"])}
    assert httpx.post(f"{url}api/v1/feedback", data=feedback, files={"image": ("a.png", image_bytes("cat", 80))})
    httpx.get(f"{url}no/such/path/{'x' * 50}")

    after = scrape(url)
    predict = ("route", "/api/v1/predict")
    assert after[("classifier_app_requests_total", (("method", "POST"), predict, ("status", "200")))] == 3
    assert after[("classifier_app_requests_total", (("method", "POST"), predict, ("status", "400")))] == 1
    assert after[("classifier_app_request_seconds_count", (predict,))] == 4
    assert after[("classifier_app_request_seconds_sum", (predict,))] > 0
    per_label = {
        dict(labels)["label"]: value
        for (name, labels), value in after.items()
        if name == "classifier_app_predictions_total" and dict(labels)["model_id"] == "model-two"
    }
    served = [p["label"] for p in predictions]
    assert per_label == {label: served.count(label) for label in set(served)}
    model = (("model_id", "model-two"),)
    assert after[("classifier_app_feedback", model)] == 1
    assert after[("classifier_app_live_agreement", model)] == (1.0 if first["label"] == "dog" else 0.0)
    # Paths no route matched share one label: clients cannot grow the label set.
    assert not any("x" * 50 in str(labels) for _, labels in after)

"""The production model served by the real clearml-serving inference service (`custom` engine, a plain process)
against the embedded server: it answers a real photo right and a bad image with a 4xx, follows a promotion and a
rollback with no failed request, and its sync thread lives on."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
import requests
from app_testing import register_model
from clearml.backend_api.session.client import APIClient
from prometheus_client.parser import text_string_to_metric_families

from classifier.samples import real_photos
from common.waiting import wait_until
from devstack.clearml_serving import OCTET_STREAM, start_inference, wait_until_serving
from devstack.processes import free_port
from loop import clearml_serving, registry
from tests.support import EndpointRequests

# clearml-serving holds every request of the process while it reloads its configuration: a swap must not need one.
# (The latency across a swap is measured by benchmarks/clearml_serving.py.)
RELOAD = "syncing model endpoint configuration"


def service_pinged_at(service_id: str) -> str:
    return str(APIClient().tasks.get_by_id(task=service_id).last_update)


def promote(model_id: str, project: str) -> None:
    registry.promote(model_id, lambda production: SimpleNamespace(promote=True, reason="test"), project=project)


@pytest.mark.slow
def test_clearml_serving_follows_production_through_promotion_and_rollback(
    clearml_server, clearml_env, checkpoints, tmp_path
):
    project = f"serving-{uuid.uuid4().hex[:8]}"
    first = register_model(checkpoints["two"], tmp_path, project, "first", [], published=False)
    promote(first, project)
    service = clearml_serving.set_up(name=f"serving-{uuid.uuid4().hex[:6]}", project=project)
    assert service.production_model_id == first
    photo, label = next((path, label) for path, label in real_photos() if label in ("cat", "dog"))
    metrics_port = free_port()
    inference = start_inference(
        clearml_env, service.id, free_port(), tmp_path / "serving", project=project, metrics_port=metrics_port
    )
    try:
        answer = wait_until_serving(inference, photo.read_bytes())
        assert (answer["model_id"], answer["label"], set(answer["probabilities"])) == (first, label, {"cat", "dog"})
        assert answer["probabilities"][label] > 0.9
        bad = requests.post(inference.url(), data=b"not an image", headers=OCTET_STREAM, timeout=30)
        assert bad.status_code == 422 and "not an image in a supported format" in bad.json()["detail"]

        reloads = inference.log_text().count(RELOAD)
        assert reloads >= 1  # the start-up sync: the message is what this check counts
        load = EndpointRequests(inference.url(), photo.read_bytes())
        load.start()
        second = register_model(checkpoints["three"], tmp_path, project, "second", [], published=False)
        promoted = time.monotonic()
        promote(second, project)
        wait_until(lambda: load.first_answer_from(second, promoted), 60, "the endpoint to answer with the new model")
        rolled_back = time.monotonic()
        assert registry.rollback(project) == (second, first)
        wait_until(lambda: load.first_answer_from(first, rolled_back), 60, "the endpoint to answer after rollback")
        settled = rolled_back + 7  # two more rounds of clearml-serving's sync thread (every 3 s) after the swap
        wait_until(lambda: load.answers[-1][0] > settled, 30, "requests after two more sync rounds")
        statuses = load.stop()
        worst = max(latency for *_, latency in load.answers)
        swap = load.first_answer_from(second, promoted) - promoted
        print(f"{len(load.answers)} requests; promotion -> new model {swap:.1f} s; worst latency {worst:.2f} s")
        assert statuses == {200}
        assert load.classes == {first: {"cat", "dog"}, second: {"cat", "dog", "rabbit"}}  # a grown class set
        assert inference.log_text().count(RELOAD) == reloads
        scraped = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(requests.get(f"http://127.0.0.1:{metrics_port}/").text)
            for sample in family.samples
        }
        answered = sum(model == second for _, _, model, _ in load.answers)
        assert scraped[("classifier_serving_predictions_total", (("label", label), ("model_id", second)))] == answered
        assert scraped[("classifier_serving_requests_total", (("outcome", "refused"),))] == 1
        assert scraped[("classifier_serving_model", (("model_id", first),))] == 1
        assert ("classifier_serving_model", (("model_id", second),)) not in scraped
        log = inference.log_text()
        assert "Exception occurred in monitoring thread" not in log and "ZeroDivisionError" not in log
        # The sync thread pings the service task every round: it is alive if the pings go on after the swaps.
        pinged = service_pinged_at(service.id)
        wait_until(lambda: service_pinged_at(service.id) > pinged, 30, "clearml-serving's sync thread to ping")
    finally:
        inference.stop()

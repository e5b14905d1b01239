"""Bounds against hostile clients: label floods, feedback rate, publishing without a login, binding beyond this
machine without a login, and concurrent decompression-heavy uploads against the decode memory budget."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import gradio as gr
import httpx
import psutil
import pytest
from app_testing import app_config, image_bytes, served
from gradio_client import Client

from app.__main__ import check_binding
from app.application import create_app
from app.guard import RateLimiter, Refused
from classifier.synthetic import hostile_float_tiff


def start(tmp_path, checkpoints, *options: str, login: tuple[str, str] | None = None):
    """(app, server, url): the app serving the cat/dog model; `server.close()` stops it and closes the app."""
    app = create_app(app_config(tmp_path / "feedback", *options), login, model=served(checkpoints["two"], "model-two"))
    try:
        server = app.serve(background=True, quiet=True)
    except BaseException:
        app.close()
        raise
    return app, server, server.url


def feedback(url: str, label: str, index: int, **options) -> httpx.Response:
    return httpx.post(f"{url}api/v1/feedback?label={label}", content=image_bytes("cat", index), **options)


@pytest.mark.slow
def test_new_label_flood_from_one_client_is_stopped(tmp_path, checkpoints):
    app, server, url = start(tmp_path, checkpoints, "--max-new-labels", "5", "--max-new-labels-per-client", "3")
    try:
        statuses = [feedback(url, f"label{i}", 100 + i).status_code for i in range(6)]
        assert statuses == [200, 200, 200, 429, 429, 429]
        refused = feedback(url, "label9", 120).json()["detail"]
        assert "You have added 3 new labels" in refused
        # Known classes and labels already pending are still accepted.
        assert feedback(url, "dog", 130).status_code == 200
        assert feedback(url, "label1", 131).status_code == 200
    finally:
        server.close()
    assert sorted(app.service.pending_new_labels()) == ["label0", "label1", "label2"]


def test_new_labels_are_bounded_in_all_across_clients(tmp_path, checkpoints):
    from app.guard import LabelPolicy
    from app.service import Guards

    with create_app(app_config(tmp_path / "feedback"), None, model=served(checkpoints["two"], "model-two")) as app:
        app.service.guards = Guards(RateLimiter(0), LabelPolicy(max_pending=2, max_per_client=5))
        for index, client in enumerate(["address:a", "address:b"]):
            app.service.submit_feedback(image_bytes("cat", 140 + index), f"new{index}", client=client)
        with pytest.raises(Refused, match="2 new labels are already waiting"):
            app.service.submit_feedback(image_bytes("cat", 150), "new9", client="address:c")


def test_allow_list_mode_accepts_only_the_listed_labels(tmp_path, checkpoints):
    app, server, url = start(tmp_path, checkpoints, "--allowed-labels", "cat,dog,rabbit")
    try:
        assert feedback(url, "rabbit", 160).status_code == 200
        refused = feedback(url, "hamster", 161)
        assert refused.status_code == 422 and "not one of the allowed labels" in refused.json()["detail"]
    finally:
        server.close()
    assert [item.label for item in app.service.store.items()] == ["rabbit"]


def test_feedback_rate_is_limited_per_client(tmp_path, checkpoints):
    app, server, url = start(tmp_path, checkpoints, "--feedback-per-minute", "2")
    try:
        statuses = [feedback(url, "cat", 170 + i).status_code for i in range(3)]
        assert statuses == [200, 200, 429]
    finally:
        server.close()
    assert len(app.service.store.items()) == 2


def test_rate_limiter_window_slides():
    now = [0.0]
    limiter = RateLimiter(2, window_s=60, clock=lambda: now[0])
    limiter.check("a"), limiter.check("a"), limiter.check("b")
    with pytest.raises(Refused, match="try again in 60 s"):
        limiter.check("a")
    now[0] = 60.5
    limiter.check("a")


@pytest.mark.slow
def test_publish_needs_a_signed_in_user_when_a_login_is_configured(tmp_path, checkpoints):
    _, server, url = start(tmp_path, checkpoints)
    try:  # no login: the app listens on this machine only, whose user may publish
        assert Client(url, verbose=False).predict(api_name="/publish") == "Nothing to publish."
    finally:
        server.close()
    app, server, url = start(tmp_path, checkpoints, login=("ann", "pw"))
    try:
        with pytest.raises(gr.Error, match="need a signed-in user"):
            app.ui.publish()  # a call from nobody signed in
        assert Client(url, auth=("ann", "pw"), verbose=False).predict(api_name="/publish") == "Nothing to publish."
        assert httpx.get(f"{url}api/v1/model").status_code == 401
        assert httpx.get(f"{url}api/v1/model", auth=("ann", "pw")).status_code == 200
        assert httpx.get(f"{url}metrics").status_code == 401
        assert "classifier_app_requests_total" in httpx.get(f"{url}metrics", auth=("ann", "pw")).text
        assert httpx.get(f"{url}healthz").status_code == 200
    finally:
        server.close()


@pytest.mark.slow
def test_refuses_to_listen_beyond_this_machine_without_a_login():
    check_binding("127.0.0.1", None, insecure=False)
    check_binding("localhost", None, insecure=False)
    check_binding("0.0.0.0", ("ann", "pw"), insecure=False)
    check_binding("0.0.0.0", None, insecure=True)
    with pytest.raises(SystemExit, match="without a login"):
        check_binding("0.0.0.0", None, insecure=False)
    # As a user starts it: the app exits before it connects to anything.
    result = subprocess.run(
        [sys.executable, "-m", "app", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "Refusing to serve on '0.0.0.0' without a login" in result.stderr


def test_request_bodies_are_bounded_in_memory_together(tmp_path, checkpoints):
    _, server, url = start(tmp_path, checkpoints, "--request-memory-mb", "0.5")
    try:
        refused = httpx.post(f"{url}api/v1/predict", content=b"\0" * 600_000)
        assert refused.status_code == 413 and "at most 0.5" in refused.json()["detail"]
        assert httpx.post(f"{url}api/v1/predict", content=image_bytes("cat", 180)).status_code == 200
    finally:
        server.close()


@pytest.mark.slow
def test_four_hostile_tiffs_at_once_stay_within_the_decode_budget(tmp_path, checkpoints):
    budget_mb = 512
    app, server, url = start(tmp_path, checkpoints, "--decode-memory-mb", str(budget_mb))
    data = hostile_float_tiff()
    assert len(data) < 300 * 1024
    process = psutil.Process()
    before = process.memory_info().rss
    peak, statuses, running = before, [], True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.002)

    def upload() -> None:
        statuses.append(httpx.post(f"{url}api/v1/predict", content=data, timeout=120).status_code)

    sampler = threading.Thread(target=sample)
    sampler.start()
    uploads = [threading.Thread(target=upload) for _ in range(4)]
    try:
        for thread in uploads:
            thread.start()
        for thread in uploads:
            thread.join()
    finally:
        running = False
        sampler.join()
        server.close()
    assert statuses == [200] * 4  # valid images: served one after another, not refused
    assert (peak - before) / 2**20 < budget_mb
    assert 0 < app.service.budget.peak_bytes <= budget_mb * 2**20

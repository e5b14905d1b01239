"""The app as an object: building it changes nothing in the process, `start()` does, `close()` stops every thread
it started and puts the process-wide settings back; served by uvicorn, the lifespan starts and closes it."""

from __future__ import annotations

import sys
import threading
import uuid

import httpx
import pytest
import torch
from app_testing import app_config, image_bytes, served
from clearml import Task

from app.application import GIL_SWITCH_INTERVAL_S, App, create_app
from app.config import AppConfig, parse_args


def process_settings() -> tuple[int, float]:
    return torch.get_num_threads(), sys.getswitchinterval()


def thread_idents() -> set[int]:
    return {thread.ident for thread in threading.enumerate()}


def test_create_app_changes_nothing_process_wide_until_start(tmp_path, checkpoints):
    before, threads_before = process_settings(), thread_idents()
    app = create_app(app_config(tmp_path, "--cpu-workers", "2"), None, model=served(checkpoints["two"], "two"))
    try:
        assert process_settings() == before
        assert thread_idents() - threads_before == set()  # threads of earlier tests may end meanwhile
        assert App.threads() == []
        app.start()
        app.start()  # a second start does nothing
        assert (torch.get_num_threads(), sys.getswitchinterval()) == (1, GIL_SWITCH_INTERVAL_S)
        assert {thread.name for thread in App.threads()} == {"app-inference-wide", "app-inference-0", "app-inference-1"}
        assert app.service.predict(image_bytes("cat", 1)).model_id == "two"
    finally:
        app.close()
    assert App.threads() == []
    assert process_settings() == before
    app.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        app.start()


def test_closing_an_app_stops_every_thread_it_started(clearml_server, tmp_path):
    """Following the registry, publishing automatically and reporting to a serving task: each worker a thread."""
    project = f"app-test-{uuid.uuid4().hex[:8]}"
    config = app_config(
        tmp_path,
        *("--project", project, "--dataset-project", project, "--cpu-workers", "1"),
        *("--publish-every-n", "5", "--report-interval", "30", "--poll-interval", "0.2"),
    )
    with create_app(config, None) as app:
        app.start()
        names = {thread.name for thread in App.threads()}
        assert names == {
            "app-inference-wide",
            "app-inference-0",
            "app-registry-watcher",
            "app-auto-publisher",
            "app-serving-reporter",
        }
        reporter = app.reporter
    assert App.threads() == []
    assert Task.get_task(task_id=reporter.id).status == "stopped"  # closed with its last report


def test_uvicorn_lifespan_starts_and_closes_the_app(tmp_path, checkpoints):
    app = create_app(app_config(tmp_path), ("ann", "pw"), model=served(checkpoints["two"], "two"))
    with app:
        assert not app.started
        server = app.serve(background=True, quiet=True)
        try:
            assert app.started and not app.closed
            assert {"app-server", "app-inference-wide"} <= {thread.name for thread in App.threads()}
            response = httpx.post(f"{server.url}api/v1/predict", content=image_bytes("dog", 2), auth=("ann", "pw"))
            assert response.status_code == 200 and response.json()["predictions"][0]["model_id"] == "two"
        finally:
            server.close()
        assert app.closed  # by uvicorn's shutdown, before the `with` closes it
        assert App.threads() == []


def test_a_start_that_fails_stops_the_server_and_closes_the_app(tmp_path, checkpoints):
    app = create_app(app_config(tmp_path), None, model=served(checkpoints["two"], "two"))
    app.close()  # a closed app refuses to start: uvicorn's startup fails
    with pytest.raises(RuntimeError, match="did not start"):
        app.serve(background=True, quiet=True)
    assert App.threads() == []


def test_config_in_code_is_bounded_as_on_the_command_line(tmp_path):
    assert parse_args(["--data-dir", str(tmp_path)]) == AppConfig(data_dir=tmp_path)
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        AppConfig(concurrency=0)
    with pytest.raises(ValueError, match="quality_threshold must be at most 1"):
        AppConfig(quality_threshold=1.5)
    with pytest.raises(ValueError, match="review_by must be one of confidence, margin"):
        AppConfig(review_by="size")

"""Following the model registry: the app serves the newest published model with the serving tag and swaps
in a newer one while requests keep running."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from app_testing import app_config, image_bytes, register_model
from gradio_client import Client, handle_file

from app.application import create_app
from app.registry import model_history
from common.waiting import wait_until
from loop.registry import production_model


def test_only_the_newest_published_model_with_the_tag_is_served(clearml_server, checkpoints, tmp_path):
    project = f"app-test-{uuid.uuid4().hex[:8]}"
    assert production_model(project, "production") is None  # not even the project exists yet
    first = register_model(checkpoints["two"], tmp_path, project, "first", ["production"], metrics={"accuracy": 0.9})
    register_model(checkpoints["three"], tmp_path, project, "draft", ["production"], published=False)
    register_model(checkpoints["three"], tmp_path, project, "candidate", ["candidate"])
    assert production_model(project, "production").id == first

    config = app_config(tmp_path / "feedback", "--project", project, "--poll-interval", "0.2")
    with create_app(config, None) as app:
        assert app.watcher.check_once() and not app.watcher.check_once()
        served = app.holder.require()
    assert (served.model_id, served.classes, served.checkpoint.dataset_id) == (first, ["cat", "dog"], "dataset-two")

    history = {model.name: model for model in model_history(project)}
    assert set(history) == {"first", "draft", "candidate"}
    assert history["first"].published and history["first"].metrics == {"accuracy": 0.9}
    assert not history["draft"].published


@pytest.mark.slow
def test_newer_production_model_is_swapped_in_while_requests_run(clearml_server, checkpoints, tmp_path):
    project = f"app-test-{uuid.uuid4().hex[:8]}"
    old = register_model(checkpoints["two"], tmp_path, project, "old", ["production"])
    # Served, the app's start loads the production model and starts its watcher (polling every 0.2 s).
    config = app_config(tmp_path / "feedback", "--project", project, "--poll-interval", "0.2")
    app = create_app(config, None)
    with app, app.serve(background=True, quiet=True) as server:
        assert app.holder.require().model_id == old
        image = tmp_path / "cat.png"
        image.write_bytes(image_bytes("cat", 77))
        stop = threading.Event()
        answers, errors = [], []

        def client():
            api = Client(server.url, verbose=False)
            while not stop.is_set():
                try:
                    label, _ = api.predict(handle_file(str(image)), api_name="/predict")
                    answers.append({entry["label"] for entry in label["confidences"]})
                except Exception as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(4)]
        try:
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            new = register_model(checkpoints["three"], tmp_path, project, "new", ["production"])
            wait_until(lambda: app.holder.require().model_id == new, 30, "the new model to be picked up", interval=0.1)
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    assert errors == []
    assert {"cat", "dog"} in answers and {"cat", "dog", "rabbit"} in answers
    assert [model_id for model_id, _ in app.holder.swaps()] == [old, new]

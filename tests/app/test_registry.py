"""Following the model registry: the app serves the newest published model with the serving tag and swaps
in a newer one while requests keep running."""

from __future__ import annotations

import threading
import time
import uuid

from app_testing import image_bytes, launch, register_model
from gradio_client import Client, handle_file

from app.__main__ import build, parse_args
from app.registry import RegistryWatcher, model_history
from loop.registry import production_model


def test_only_the_newest_published_model_with_the_tag_is_served(clearml_server, checkpoints, tmp_path):
    project = f"app-test-{uuid.uuid4().hex[:8]}"
    assert production_model(project, "production") is None  # not even the project exists yet
    first = register_model(checkpoints["two"], tmp_path, project, "first", ["production"], metrics={"accuracy": 0.9})
    register_model(checkpoints["three"], tmp_path, project, "draft", ["production"], published=False)
    register_model(checkpoints["three"], tmp_path, project, "candidate", ["candidate"])
    assert production_model(project, "production").id == first

    args = parse_args(["--project", project, "--data-dir", str(tmp_path / "feedback"), "--poll-interval", "0.2"])
    ui, watcher, _ = build(args)
    assert watcher.check_once() and not watcher.check_once()
    served = ui.service.holder.require()
    assert (served.model_id, served.classes, served.checkpoint.dataset_id) == (first, ["cat", "dog"], "dataset-two")

    history = {model.name: model for model in model_history(project)}
    assert set(history) == {"first", "draft", "candidate"}
    assert history["first"].published and history["first"].metrics == {"accuracy": 0.9}
    assert not history["draft"].published


def test_newer_production_model_is_swapped_in_while_requests_run(clearml_server, checkpoints, tmp_path):
    project = f"app-test-{uuid.uuid4().hex[:8]}"
    old = register_model(checkpoints["two"], tmp_path, project, "old", ["production"])
    args = parse_args(["--project", project, "--data-dir", str(tmp_path / "feedback")])
    ui, _, _ = build(args)
    watcher = RegistryWatcher(ui.service.holder, project, "production", interval_s=0.2)
    watcher.check_once()
    demo, url = launch(ui)
    image = tmp_path / "cat.png"
    image.write_bytes(image_bytes("cat", 77))
    stop = threading.Event()
    answers, errors = [], []

    def client():
        api = Client(url, verbose=False)
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
        watcher.start()
        time.sleep(1.0)
        new = register_model(checkpoints["three"], tmp_path, project, "new", ["production"])
        deadline = time.monotonic() + 30
        while ui.service.holder.require().model_id != new:
            assert time.monotonic() < deadline, "the new model was not picked up"
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        watcher.stop()
        demo.close()

    assert errors == []
    assert {"cat", "dog"} in answers and {"cat", "dog", "rabbit"} in answers
    assert [model_id for model_id, _ in ui.service.holder.swaps()] == [old, new]

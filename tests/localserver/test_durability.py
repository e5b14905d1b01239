"""A kill -9 of the server loses nothing it acknowledged; a restart on the same data dir serves it all again."""

from __future__ import annotations

import pytest
import requests
from server_testing import login, ok
from test_files import auth, upload

from localserver import start_server_process


@pytest.mark.slow
def test_restart_after_kill_keeps_entities_queues_files_and_tokens(tmp_path):
    data_dir = tmp_path / "data"
    first = start_server_process(data_dir, port=0)
    try:
        token = login(first)
        project_id = ok(first, "projects.create", token, name="durable/child")["id"]
        task_id = ok(first, "tasks.create", token, name="durable-task", type="training", project=project_id)["id"]
        ok(first, "tasks.edit", token, task=task_id, hyperparams={"General": {"lr": {"name": "lr", "value": "0.1"}}})
        default_id = ok(first, "queues.get_all", token, name="^default$")["queues"][0]["id"]
        ok(first, "tasks.enqueue", token, task=task_id, queue=default_id)
        model_id = ok(first, "models.create", token, name="durable-model", uri="file:///m.bin", project=project_id)[
            "id"
        ]
        ok(first, "models.set_ready", token, model=model_id)
        assert upload(first, "durable/file.bin", b"payload", auth(first)).status_code == 200
    finally:
        first.kill()

    second = start_server_process(data_dir, port=0)
    try:
        assert (second.access_key, second.secret_key) == (first.access_key, first.secret_key)
        task = ok(second, "tasks.get_by_id", token, task=task_id)["task"]  # the old token is still valid
        assert task["status"] == "queued" and task["hyperparams"]["General"]["lr"]["value"] == "0.1"
        names = [p["name"] for p in ok(second, "projects.get_all", token, name="^durable")["projects"]]
        assert sorted(names) == ["durable", "durable/child"]
        assert ok(second, "models.get_by_id", token, model=model_id)["model"]["ready"] is True
        queues = ok(second, "queues.get_all", token, system_tags=["default"])["queues"]
        assert len(queues) == 1 and [e["task"] for e in queues[0]["entries"]] == [task_id]
        got = requests.get(
            f"{second.files_url}/durable/file.bin", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert got.content == b"payload"
        assert ok(second, "queues.get_next_task", token, queue=default_id)["entry"]["task"] == task_id
    finally:
        second.stop()

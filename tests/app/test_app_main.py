"""`python -m app` as a user starts it: serves the production model, behind a login from the environment,
and publishes feedback automatically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from app_testing import image_bytes, register_model
from clearml import Dataset
from gradio_client import Client, handle_file

from common.waiting import wait_until
from devstack.processes import free_port

REPOSITORY = Path(__file__).resolve().parents[2]


def connect(url: str, process: subprocess.Popen, auth, timeout: float = 120) -> Client:
    def client() -> Client | None:
        try:
            return Client(url, auth=auth, verbose=False)
        except Exception:
            assert process.poll() is None, "the app exited"
            return None

    return wait_until(client, timeout, "the app to come up", interval=0.5)


@pytest.mark.slow
def test_python_m_app_serves_publishes_and_requires_login(clearml_server, clearml_env, checkpoints, tmp_path):
    project = f"app-test-{uuid.uuid4().hex[:8]}"
    model_id = register_model(checkpoints["two"], tmp_path, project, "served", ["production"])
    url = f"http://127.0.0.1:{free_port()}/"
    command = [sys.executable, "-m", "app", "--project", project, "--dataset-project", project]
    command += ["--port", url.rsplit(":", 1)[1].strip("/"), "--data-dir", str(tmp_path / "feedback")]
    command += ["--publish-every-n", "2", "--publish-every-minutes", "0"]
    env = {**os.environ, **clearml_env, "APP_USERNAME": "tester", "APP_PASSWORD": "s3cret"}
    with open(tmp_path / "app.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPOSITORY, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        client = connect(url, process, auth=("tester", "s3cret"))
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as there is one
            Client(url, verbose=False).predict(api_name="/served_model")
        shown = client.predict(api_name="/served_model")
        assert model_id in shown and "cat, dog" in shown and "macro_f1=" in shown and "per_class" not in shown

        for index in (1, 2):
            path = tmp_path / f"pet{index}.png"
            path.write_bytes(image_bytes("rabbit", 800 + index))
            assert "Stored as **rabbit**" in client.predict(handle_file(str(path)), "rabbit", api_name="/feedback")
        (version,) = wait_until(
            lambda: Dataset.list_datasets(dataset_project=project, only_completed=True),
            60,
            f"a published version; see {tmp_path / 'app.log'}",
            interval=0.5,
        )
        added = Dataset.get(dataset_id=version["id"]).list_added_files()
        assert len(added) == 2 and all(path.startswith("rabbit/") for path in added)
        assert client.predict(api_name="/publish") == "Nothing to publish."
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

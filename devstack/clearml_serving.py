"""Running ClearML Serving's inference service as a plain process (no Docker, Triton or Kafka): uvicorn on
127.0.0.1 with clearml-serving's FastAPI app and the `custom` engine, against the server of ``client_env``."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from common.waiting import wait_until
from devstack.processes import GroupProcess, independent_environ
from loop import clearml_serving
from serving import metrics

# clearml-serving polls its service task every CLEARML_SERVING_POLL_FREQ minutes (default 5): 3 s here, so a
# promotion reaches the endpoint within seconds.
DEFAULT_POLL_MINUTES = 0.05


@dataclass
class InferenceProcess(GroupProcess):
    """clearml-serving's inference service; :meth:`stop` kills uvicorn with the SDK's helpers (its group)."""

    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/serve"

    def url(self, endpoint: str = clearml_serving.ENDPOINT) -> str:
        return f"{self.base_url}/{endpoint}"


def start_inference(
    client_env: dict[str, str],
    service_id: str,
    port: int,
    work_dir: str | os.PathLike,
    project: str | None = None,
    poll_minutes: float = DEFAULT_POLL_MINUTES,
    metrics_port: int | None = None,
) -> InferenceProcess:
    """Start the inference service of ``service_id`` on 127.0.0.1:``port``; its log is ``work_dir/serving.log``.
    ``project``: the loop's project, whose production model `serving.production` follows; ``metrics_port``: where
    `serving.metrics` serves Prometheus metrics (127.0.0.1)."""
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    env = independent_environ()
    env.update(client_env)
    env.update(
        CLEARML_SERVING_TASK_ID=service_id,
        CLEARML_SERVING_POLL_FREQ=str(poll_minutes),
        CLEARML_BKG_THREAD_REPORT="1",  # the SDK reports from a thread, not a forked process
        PYTHONUNBUFFERED="1",
    )
    if project:
        env["CLASSIFIER_PROJECT"] = project
    if metrics_port:
        env[metrics.PORT_ENV] = str(metrics_port)
    log_path = work_dir / "serving.log"
    command = [sys.executable, "-m", "uvicorn", "clearml_serving.serving.main:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=work_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return InferenceProcess(process, log_path, port=port)


def wait_until_serving(inference: InferenceProcess, image: bytes, timeout: float = 120) -> dict:
    """Post ``image`` to the `pets` endpoint until it answers with a model; returns that answer."""

    def answered() -> dict | None:
        if inference.process.poll() is not None:
            raise RuntimeError(
                f"the inference service exited ({inference.process.returncode}); see {inference.log_path}"
            )
        try:
            response = requests.post(inference.url(), data=image, headers=OCTET_STREAM, timeout=10)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    return wait_until(answered, timeout, f"clearml-serving to answer on {inference.url()}", interval=0.5)


OCTET_STREAM = {"Content-Type": "application/octet-stream"}

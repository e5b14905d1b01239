"""Issue 6: a fresh clone, `make run` in the background (with clearml-serving), a prediction through the app and
one through clearml-serving, Ctrl-C, nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests
from gradio_client import Client, handle_file

from classifier.synthetic import make_image
from common.waiting import wait_until
from devstack.clearml_serving import OCTET_STREAM
from devstack.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 900


def descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE}


@pytest.mark.slow
def test_make_run_serves_a_production_model_and_stops_cleanly_on_ctrl_c(tmp_path):
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    home = tmp_path / "home"  # no clearml.conf there: the embedded server is used
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    # The clone runs with the test's already-installed virtualenv; its own code comes first on the path.
    env.update(HOME=str(home), PYTHONPATH=str(clone))
    server_port, app_port, serving_port = free_port(), free_port(), free_port()
    venv = Path(sys.executable).parent.parent
    up_to_date = subprocess.run(["make", "-q", "install", f"VENV={venv}"], cwd=clone, env=env)
    # Otherwise `make run` would reinstall into the test's own virtualenv, pointing it at the temporary clone.
    assert up_to_date.returncode == 0, f"{venv} is not installed by `make install`: run it first"
    output = (tmp_path / "make-run.log").open("wb")
    make = subprocess.Popen(
        [
            *("make", "run", f"VENV={venv}"),
            f"ARGS=--server-port {server_port} --app-port {app_port} --clearml-serving --serving-port {serving_port}",
        ],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the test can send Ctrl-C to it like a terminal
    )
    seen: set[int] = set()
    log = tmp_path / "make-run.log"
    try:

        def app_ready() -> bool:
            nonlocal seen
            assert make.poll() is None, f"make run exited early:\n{log.read_text(errors='replace')[-5000:]}"
            seen |= descendants(make.pid)
            return "clearml-serving ready" in log.read_text(errors="replace")

        wait_until(app_ready, STARTUP_TIMEOUT_S, "make run to start the app and clearml-serving", interval=2)
        seen |= descendants(make.pid)
        assert "production model:" in log.read_text()
        assert f"web UI: http://127.0.0.1:{server_port} (sign in with access key" in log.read_text()
        sign_in_page = requests.get(f"http://127.0.0.1:{server_port}/login", timeout=10)
        assert sign_in_page.status_code == 200 and 'name="secret_key"' in sign_in_page.text
        assert (clone / ".data" / "server").is_dir()

        image = tmp_path / "cat.png"
        make_image("cat", 7, size=96).save(image)
        label, latency_ms = Client(f"http://127.0.0.1:{app_port}/", verbose=False).predict(
            handle_file(str(image)), api_name="/predict"
        )
        assert {entry["label"] for entry in label["confidences"]} >= {"cat", "dog"}
        assert latency_ms > 0
        endpoint = f"http://127.0.0.1:{serving_port}/serve/pets"
        assert f"clearml-serving ready: {endpoint}" in log.read_text()
        answer = requests.post(endpoint, data=image.read_bytes(), headers=OCTET_STREAM, timeout=30).json()
        production = log.read_text().split("production model: ")[1].split()[0]
        assert answer["model_id"] == production and set(answer["probabilities"]) >= {"cat", "dog"}
        seen |= descendants(make.pid)
    finally:
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(timeout=120)
        finally:
            leftovers = alive(seen | {make.pid})
            for pid in leftovers:  # never leave anything behind, even when the assertion below fails
                os.kill(pid, signal.SIGKILL)
    assert "stopped every process this command started" in log.read_text()
    assert leftovers == set(), f"processes left running after Ctrl-C: {leftovers}"

"""Helpers for tests that run the ClearML entry points as real processes against the session's server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clearml import Task

from classifier.synthetic import make_image_folder
from tasks import common

# Set by the SDK in a process that has a task, for its own children; an independent process must not see them.
_PARENT_TASK_VARIABLES = (
    "CLEARML_TASK_ID",
    "TRAINS_TASK_ID",
    "CLEARML_PROC_MASTER_ID",
    "TRAINS_PROC_MASTER_ID",
    "CLEARML_SIMULATE_REMOTE_TASK",
    "CLEARML_LOG_TASK_TO_BACKEND",
)
# Reporting from a subprocess makes every SDK process wait 10 s at exit; our short-lived steps cannot afford it.
_FAST_EXIT = "\nsdk { development { report_use_subprocess: false } }\n"


def fast_client_env(clearml_env: dict[str, str], directory: Path, **extra: str) -> dict[str, str]:
    """The session's client variables with a config file that lets SDK processes exit at once."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "clearml-fast.conf"
    config.write_text(Path(clearml_env["CLEARML_CONFIG_FILE"]).read_text() + _FAST_EXIT)
    return {**clearml_env, "CLEARML_CONFIG_FILE": str(config), **extra}


def run_module(env: dict[str, str], module: str, *args: str, timeout: float = 240, check: bool = True):
    """`python -m module args` with `env`; its whole process group is killed afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env={**{k: v for k, v in os.environ.items() if k not in _PARENT_TASK_VARIABLES}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if check:
        assert process.returncode == 0, f"{module} {args} exited with {process.returncode}:\n{output[-6000:]}"
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


def newest_task(name: str, project: str = common.PROJECT) -> Task:
    found = common.find_tasks(project, name)
    assert found, f"no task {name!r} in {project}"
    return found[0]


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 1.0):
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def image_folder(root: Path, classes: list[str], per_class: int, start: int = 0) -> Path:
    """Generated 64 px images `start .. start+per_class-1` of each class, `<root>/<class>/<image>`."""
    return make_image_folder(root, classes, per_class, size=64, start=start)

"""Helpers for tests that run the ClearML entry points as real processes against the session's server."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from clearml import Task

from classifier.synthetic import make_image_folder
from devstack.processes import independent_environ, run_in_own_group
from tasks import common


def run_module(env: dict[str, str], module: str, *args: str, timeout: float = 240, check: bool = True):
    """`python -m module args` with `env`; its whole process group is killed afterwards."""
    result = run_in_own_group(
        [sys.executable, "-m", module, *args], env={**independent_environ(), **env}, timeout=timeout
    )
    if check:
        assert result.returncode == 0, f"{module} {args} exited with {result.returncode}:\n{result.stdout[-6000:]}"
    return result


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

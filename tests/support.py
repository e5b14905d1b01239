"""Helpers shared by the tests (fixtures are in conftest.py): ClearML entry points run as real processes against
the session's server, task lookups and generated image folders. Ports and polling come from
`devstack.processes` (`free_port`, `wait_until`), which the dev stack and the benchmarks use too."""

from __future__ import annotations

import sys
from pathlib import Path

from clearml import Task

from classifier.synthetic import make_image_folder
from devstack.processes import independent_environ, run_in_own_group
from loop import settings, stages


def run_module(env: dict[str, str], module: str, *args: str, timeout: float = 240, check: bool = True):
    """`python -m module args` with `env`; its whole process group is killed afterwards."""
    result = run_in_own_group(
        [sys.executable, "-m", module, *args], env={**independent_environ(), **env}, timeout=timeout
    )
    if check:
        assert result.returncode == 0, f"{module} {args} exited with {result.returncode}:\n{result.stdout[-6000:]}"
    return result


def newest_task(name: str, project: str = settings.PROJECT) -> Task:
    found = stages.find_tasks(project, name)
    assert found, f"no task {name!r} in {project}"
    return found[0]


def image_folder(root: Path, classes: list[str], per_class: int, start: int = 0) -> Path:
    """Generated 64 px images `start .. start+per_class-1` of each class, `<root>/<class>/<image>`."""
    return make_image_folder(root, classes, per_class, size=64, start=start)

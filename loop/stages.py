"""The stage runner and the task plumbing shared by the stages, the pipeline controller and the trigger.

A stage module defines a `Stage` (name, task type, parameter defaults, `run(task, params)`) and its `main` is
`stages.main(STAGE, argv)`: parse `--name value` options typed like the defaults, start (or, under an agent or
a pipeline, attach to) the stage's task and connect the parameters, run, close. A `StageError` from `run`
becomes a message and exit code 1; under an agent that marks the step failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clearml import Task

from loop import sdk_private, settings
from loop.errors import EXIT_CODE, StageError

PARAM_SECTION = "General"


@dataclass(frozen=True)
class Stage:
    name: str
    task_type: str  # a Task.TaskTypes value
    defaults: Mapping[str, Any]
    run: Callable[[Task, dict], Any]
    description: str
    # Shown beside a parameter in the web UI: what an empty value means, so a cloned template runs as it is.
    parameter_help: Mapping[str, str] = field(default_factory=dict)

    @property
    def entry(self) -> str:
        """What a template of this stage runs: "package.module:function"."""
        module = self.run.__module__
        if module == "__main__":  # `python -m tasks.train`: the module's real name is in its spec
            module = sys.modules["__main__"].__spec__.name
        return f"{module}:main"

    @property
    def script_name(self) -> str:
        """The file name an agent gives the stage's literal script."""
        return f"{self.name}_step.py"


def main(stage: Stage, argv: list[str] | None = None) -> Any:
    params = parse_cli(stage.defaults, stage.description, argv)
    task, params = init_stage_task(stage, params)
    try:
        result = stage.run(task, params)
    except StageError as error:
        # The SDK's exit hook marks the task failed on the non-zero exit code, as for any failure.
        print(f"error: {stage.name}: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CODE) from None
    task.close()
    return result


def parse_cli(defaults: Mapping[str, Any], description: str, argv: list[str] | None = None) -> dict[str, Any]:
    """`--some-name VALUE` for every parameter, typed like its default; returns the full parameter dict."""
    parser = argparse.ArgumentParser(description=description)
    for name, default in defaults.items():
        kind = _bool_arg if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=default)
    return vars(parser.parse_args(argv))


def _bool_arg(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def init_stage_task(stage: Stage, params: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """Start (or, under an agent or a pipeline, attach to) the stage's task and connect its parameters.

    Under an agent `connect` replaces the values with those stored on the task, so a clone edited in the UI
    runs with the edited values. Framework auto-logging is off: the stage registers its model itself.
    """
    standalone_code()
    task = Task.init(
        project_name=settings.PROJECT,
        task_name=stage.name,
        task_type=stage.task_type,
        reuse_last_task_id=False,
        output_uri=True,
        auto_connect_arg_parser=False,
        auto_connect_frameworks=False,
        auto_resource_monitoring=False,
    )
    if Task.running_locally():
        # Record the stage's entry point, not this process's command line: a clone then runs like a template.
        set_literal_script(task, stage.entry, stage.script_name)
    if not task.output_uri:
        # Under an agent `output_uri=True` above is ignored; a model must still reach the files server.
        task.output_uri = True
    connected = task.connect(dict(params), name=PARAM_SECTION)
    return task, {name: _typed(connected.get(name, default), default) for name, default in params.items()}


def _typed(value: Any, default: Any) -> Any:
    """Values edited in the UI come back as strings; cast them to the default's type."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else _bool_arg(str(value))
    if isinstance(default, (int, float)) and not isinstance(value, type(default)):
        return type(default)(value)
    return value


def record_resolved(task: Task, params: Mapping[str, Any], name: str, resolved: Any) -> None:
    """Store on `task` what an empty or symbolic parameter resolved to, so the web UI (and a clone) shows what ran."""
    if resolved is not None and str(resolved) != str(params.get(name, "")):
        task.set_parameter(f"{PARAM_SECTION}/{name}", resolved)


def standalone_code() -> None:
    """Record only the running script, not the repository, on tasks created from this process.

    Repository detection would analyse every Python file under the git root (including a virtualenv there) and
    hold up the process exit for minutes; agents run the installed package anyway (see `literal_script`).
    """
    Task.force_store_standalone_script(True)


def literal_script(entry: str) -> str:
    """The code a template or a controller carries: it imports the installed package and calls its main.

    The agent writes this text to a file and runs it; the real code comes from the installed `tasks`,
    `pipelines` and `triggers` packages, so no repository clone is involved.
    """
    module, function = entry.split(":")
    return f"from {module} import {function}\n\n{function}()\n"


def set_literal_script(task: Task, entry: str, entry_point: str) -> None:
    """Make `task` run `entry` ("package.module:function") wherever an agent or a local pipeline runs it."""
    if task.is_main_task():
        # Task.init detects the repository in the background; let it finish so it cannot overwrite ours.
        sdk_private.wait_for_repo_detection(task)
    task.set_script(
        repository="",
        branch="",
        commit="",
        diff=literal_script(entry),
        working_dir=".",
        entry_point=entry_point,
        binary="python3",
    )


def task_artifact(task_id: str, name: str) -> Any:
    """The object stored as artifact `name` on task `task_id` (a clear error when it is not there)."""
    try:
        task = Task.get_task(task_id=task_id)
    except ValueError as error:
        raise StageError(f"task {task_id!r} not found: {error}") from error
    artifact = task.artifacts.get(name)
    if artifact is None:
        raise StageError(f"task {task_id} ({task.name}) has no artifact {name!r}")
    return artifact.get()


def find_tasks(
    projects: str | Sequence[str],
    name: str | None,
    statuses: list[str] | None = None,
    tags: list[str] | None = None,
    types: list[str] | None = None,
    limit: int | None = None,
) -> list[Task]:
    """Tasks in `projects` (hidden projects included) named exactly `name` (any name if None), newest first; at
    most `limit` of them (the SDK loads each task it returns)."""
    project_ids = [
        project_id
        for project in ([projects] if isinstance(projects, str) else projects)
        if (project_id := Task.get_project_id(project, search_hidden=True))
    ]
    if not project_ids:
        return []
    task_filter: dict[str, Any] = {"project": project_ids, "order_by": ["-created"], "search_hidden": True}
    if statuses:
        task_filter["status"] = statuses
    if types:
        task_filter["type"] = types
    if limit:
        task_filter |= {"page": 0, "page_size": limit}
    return Task.get_tasks(task_name=f"^{name}$" if name else None, tags=tags, task_filter=task_filter)

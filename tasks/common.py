"""Glue shared by the ClearML entry points: names, parameter handling, model and dataset lookups.

Everything here talks to whatever server the ClearML configuration names (clearml.conf or CLEARML_* variables).
The ML itself lives in `classifier/`, which knows nothing about ClearML.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clearml import Dataset, Model, Task
from clearml.backend_api.session.client import APIClient

PROJECT = "selfimproving-classifier"
TEMPLATE_PROJECT = f"{PROJECT}/templates"
DATASET_PROJECT = PROJECT
DATASET_NAME = "pets"
PRODUCTION_TAG = "production"
CANDIDATE_TAG = "candidate"
STAGES = ("prepare_data", "train", "evaluate", "register_model")
PARAM_SECTION = "General"
SPLIT_ARTIFACT = "split"
EVALUATION_ARTIFACT = "evaluation"
# A model id parameter set to this value means "no model" (train from scratch, compare against nothing);
# an empty value means "the current production model".
NO_MODEL = "none"


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


def init_stage_task(stage: str, task_type: str, params: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """Start (or, under an agent or a pipeline, attach to) the stage's task and connect its parameters.

    Under an agent `connect` replaces the values with those stored on the task, so a clone edited in the UI
    runs with the edited values. Framework auto-logging is off: the stage registers its model itself.
    """
    standalone_code()
    task = Task.init(
        project_name=PROJECT,
        task_name=stage,
        task_type=task_type,
        reuse_last_task_id=False,
        output_uri=True,
        auto_connect_arg_parser=False,
        auto_connect_frameworks=False,
        auto_resource_monitoring=False,
    )
    if Task.running_locally():
        # Record the stage's entry point, not this process's command line: a clone then runs like a template.
        set_literal_script(task, f"tasks.{stage}:main", f"{stage}_step.py")
    if not task.output_uri:
        # Under an agent `output_uri=True` above is ignored; a model must still reach the files server.
        task.output_uri = True
    connected = task.connect(dict(params), name=PARAM_SECTION)
    return task, {name: _typed(connected.get(name, default), default) for name, default in params.items()}


def standalone_code() -> None:
    """Record only the running script, not the repository, on tasks created from this process.

    Repository detection would analyse every Python file under the git root (including a virtualenv there) and
    hold up the process exit for minutes; agents run the installed package anyway (see `literal_script`).
    """
    Task.force_store_standalone_script(True)


def _typed(value: Any, default: Any) -> Any:
    """Values edited in the UI come back as strings; cast them to the default's type."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else _bool_arg(str(value))
    if isinstance(default, (int, float)) and not isinstance(value, type(default)):
        return type(default)(value)
    return value


def require(params: Mapping[str, Any], *names: str) -> None:
    missing = [name for name in names if not str(params.get(name) or "").strip()]
    if missing:
        raise SystemExit(f"missing required parameter(s): {', '.join(missing)} (set them with --{missing[0]})")


# ---------------------------------------------------------------------------------------------- datasets


def latest_dataset_id(project: str = DATASET_PROJECT, name: str = DATASET_NAME) -> str | None:
    """Id of the newest finalized version of the dataset, or None when there is none yet."""
    try:
        return Dataset.get(dataset_project=project, dataset_name=name, only_completed=True).id
    except ValueError:
        return None


def fetch_dataset(dataset_id: str) -> Path:
    """Local read-only copy of a dataset version with its whole parent chain merged (cached by the SDK)."""
    try:
        dataset = Dataset.get(dataset_id=dataset_id)
    except ValueError as error:
        raise SystemExit(f"dataset {dataset_id!r} not found: {error}") from error
    return Path(dataset.get_local_copy())


def create_dataset_version(
    folder: str | Path,
    parent_id: str | None = None,
    project: str = DATASET_PROJECT,
    name: str = DATASET_NAME,
) -> str:
    """Upload `<folder>/<class>/<image>` as a finalized dataset version (a child of `parent_id` if given)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"dataset folder {folder} does not exist")
    dataset = Dataset.create(
        dataset_name=name,
        dataset_project=project,
        parent_datasets=[parent_id] if parent_id else None,
    )
    dataset.add_files(path=str(folder))
    dataset.upload()
    dataset.finalize()
    return dataset.id


# ------------------------------------------------------------------------------------------------ models


def production_model(project: str = PROJECT, tag: str = PRODUCTION_TAG) -> Model | None:
    """The published model in `project` that carries `tag` (the newest, should there ever be two); None when
    there is none, also when the project does not exist yet."""
    try:
        found = Model.query_models(project_name=project, tags=[tag], only_published=True, max_results=1)
    except ValueError:  # the SDK's "No projects found when searching for ..."
        return None
    return found[0] if found else None


def resolve_model_id(value: str) -> str | None:
    """Model id parameter -> id: empty means the current production model, `none` means no model."""
    value = (value or "").strip()
    if value.lower() == NO_MODEL:
        return None
    if value:
        return value
    current = production_model()
    return current.id if current else None


def download_model(model_id: str) -> Path:
    """Local copy of a model's weights file (cached by the SDK)."""
    path = Model(model_id=model_id).get_local_copy(raise_on_error=True)
    if not path:
        raise SystemExit(f"model {model_id} has no downloadable weights")
    return Path(path)


def load_checkpoint(model_id: str):
    from classifier.checkpoint import Checkpoint

    return Checkpoint.load(download_model(model_id))


def move_production_tag(model_id: str, project: str = PROJECT) -> list[str]:
    """Give `model_id` the production tag and take it from every other model; returns the ids that lost it.

    The new holder is tagged first, so a reader never finds no production model at all.
    """
    model = Model(model_id=model_id)
    _set_model_tags(model, sorted({*(model.tags or []), PRODUCTION_TAG} - {CANDIDATE_TAG}))
    previous = []
    for other in Model.query_models(project_name=project, tags=[PRODUCTION_TAG], include_archived=True):
        if other.id != model_id:
            _set_model_tags(other, [tag for tag in other.tags or [] if tag != PRODUCTION_TAG])
            previous.append(other.id)
    return previous


def _set_model_tags(model: Model, tags: list[str]) -> None:
    # `Model.tags = []` is silently ignored by the SDK (it falls back to the current tags), so edit directly.
    APIClient().models.edit(model=model.id, tags=tags)


def set_model_metadata(model: Model, values: Mapping[str, Any]) -> None:
    """Metadata entries as strings (JSON for lists and dicts), readable in the UI and by `get_metadata`."""
    model.set_all_metadata(
        {
            key: {"value": value if isinstance(value, str) else json.dumps(value), "type": "str"}
            for key, value in values.items()
        },
        replace=False,
    )


# ------------------------------------------------------------------------------------------------- tasks


def task_artifact(task_id: str, name: str) -> Any:
    """The object stored as artifact `name` on task `task_id` (a clear error when it is not there)."""
    try:
        task = Task.get_task(task_id=task_id)
    except ValueError as error:
        raise SystemExit(f"task {task_id!r} not found: {error}") from error
    artifact = task.artifacts.get(name)
    if artifact is None:
        raise SystemExit(f"task {task_id} ({task.name}) has no artifact {name!r}")
    return artifact.get()


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
        task._wait_for_repo_detection(timeout=300.0)
    task.set_script(
        repository="",
        branch="",
        commit="",
        diff=literal_script(entry),
        working_dir=".",
        entry_point=entry_point,
        binary="python3",
    )


def find_tasks(
    project: str, name: str | None, statuses: list[str] | None = None, tags: list[str] | None = None
) -> list[Task]:
    """Tasks in `project` (hidden projects included) named exactly `name` (any name if None), newest first."""
    project_id = Task.get_project_id(project, search_hidden=True)
    if not project_id:
        return []
    task_filter: dict[str, Any] = {"project": [project_id], "order_by": ["-created"], "search_hidden": True}
    if statuses:
        task_filter["status"] = statuses
    return Task.get_tasks(task_name=f"^{name}$" if name else None, tags=tags, task_filter=task_filter)


def load_split(prepare_task_id: str):
    """The `SplitManifest` the prepare_data task `prepare_task_id` produced."""
    from classifier.data import SplitManifest

    return SplitManifest.from_json(json.dumps(task_artifact(prepare_task_id, SPLIT_ARTIFACT)))

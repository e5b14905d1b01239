"""Register the four stages as draft template tasks that the pipeline clones (idempotent).

Each template is a draft task in `<project>/templates` whose code is two lines that call `tasks.<stage>.main()`
from the installed package, and whose `General` parameters are the stage's defaults. Running the command again
updates the same templates in place (code and any new parameters; values edited in the UI are kept).

    python -m tasks.register
"""

from __future__ import annotations

import argparse
import importlib

from clearml import Task

from tasks import common

TASK_TYPES = {
    "prepare_data": Task.TaskTypes.data_processing,
    "train": Task.TaskTypes.training,
    "evaluate": Task.TaskTypes.testing,
    "register_model": Task.TaskTypes.qc,
}
TEMPLATE_TAG = "template"


def register_templates() -> dict[str, str]:
    """Create or update the template of every stage; returns {stage: template task id}."""
    return {stage: register_template(stage) for stage in common.STAGES}


def register_template(stage: str) -> str:
    defaults = importlib.import_module(f"tasks.{stage}").DEFAULTS
    existing = common.find_tasks(common.TEMPLATE_PROJECT, stage, statuses=["created"])
    if existing:
        task = existing[0]
    else:
        task = Task.create(
            project_name=common.TEMPLATE_PROJECT,
            task_name=stage,
            task_type=TASK_TYPES[stage],
            add_task_init_call=False,
            detect_repository=False,
        )
        task.add_tags([TEMPLATE_TAG])
    common.set_literal_script(task, f"tasks.{stage}:main", f"{stage}_step.py")
    stored = task.get_parameters(cast=False) or {}
    missing = {
        f"{common.PARAM_SECTION}/{name}": value
        for name, value in defaults.items()
        if f"{common.PARAM_SECTION}/{name}" not in stored
    }
    if missing:
        task.update_parameters(missing)
    return task.id


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    for stage, task_id in register_templates().items():
        print(f"template {common.TEMPLATE_PROJECT}/{stage}: {task_id}")


if __name__ == "__main__":
    main()

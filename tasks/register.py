"""Register the four stages as draft template tasks that the pipeline clones (idempotent).

Each template is a draft task in `<project>/templates` whose code is two lines that call `tasks.<stage>.main()`
from the installed package, and whose `General` parameters are the stage's defaults. Running the command again
updates the same templates in place (code and any new parameters; values edited in the UI are kept).

    python -m tasks.register [--base-docker IMAGE]
"""

from __future__ import annotations

import argparse
import importlib

from clearml import Task

from loop import settings, stages
from loop.errors import exit_on_error
from tasks import STAGES

TEMPLATE_TAG = "template"


# Agent 3.0.3 passes CLEARML_AGENT_SKIP_PIP_VENV_INSTALL to a task's container but not
# CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL: a template with a base docker image carries both, so its steps run on the
# image's interpreter with what is installed there (deploy/Dockerfile sets the same).
DOCKER_ARGUMENTS = (
    "-e CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1 -e CLEARML_AGENT_SKIP_PIP_VENV_INSTALL=/usr/local/bin/python3"
)


def register_templates(base_docker: str = "") -> dict[str, str]:
    """Create or update the template of every stage; returns {stage: template task id}."""
    return {name: register_template(importlib.import_module(f"tasks.{name}").STAGE, base_docker) for name in STAGES}


def register_template(stage: stages.Stage, base_docker: str = "") -> str:
    existing = stages.find_tasks(settings.TEMPLATE_PROJECT, stage.name, statuses=["created"])
    if existing:
        task = existing[0]
    else:
        task = Task.create(
            project_name=settings.TEMPLATE_PROJECT,
            task_name=stage.name,
            task_type=stage.task_type,
            add_task_init_call=False,
            detect_repository=False,
        )
        task.add_tags([TEMPLATE_TAG])
    stages.set_literal_script(task, stage.entry, stage.script_name)
    stored = task.get_parameters(cast=False) or {}
    missing = {
        f"{stages.PARAM_SECTION}/{name}": value
        for name, value in stage.defaults.items()
        if f"{stages.PARAM_SECTION}/{name}" not in stored
    }
    if missing:
        task.update_parameters(missing)
    for name, text in stage.parameter_help.items():
        key = f"{stages.PARAM_SECTION}/{name}"
        task.set_parameter(key, stored.get(key, stage.defaults[name]), description=text)
    if base_docker:
        task.set_base_docker(docker_image=base_docker, docker_arguments=DOCKER_ARGUMENTS)
    return task.id


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-docker",
        default="",
        metavar="IMAGE",
        help="run the steps in this image (clearml-agent --docker, the k8s glue), e.g. deploy/Dockerfile's",
    )
    args = parser.parse_args(argv)
    for stage, task_id in register_templates(args.base_docker).items():
        print(f"template {settings.TEMPLATE_PROJECT}/{stage}: {task_id}")


if __name__ == "__main__":
    main()

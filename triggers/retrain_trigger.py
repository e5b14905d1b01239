"""Retrain on every new version of the feedback dataset: a `TriggerScheduler` dataset trigger that clones the
registered pipeline with `Args/dataset_id = ${dataset.id}` and enqueues it on `services`.

    python -m triggers.retrain_trigger [--queue services | --foreground] [--poll-minutes 1] [--replace]

Needs the stage templates and the pipeline registered (`python -m tasks.register`,
`python -m pipelines.retrain register`). The scheduler watches the dataset projects that exist when the trigger
is added, so the command first makes sure the dataset has a version (from `--bootstrap-folder`, or the
offline sample set). A scheduler that is already queued or running is left alone: registering twice never
creates a second one (`--replace` stops the old one first).
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from clearml import Task
from clearml.automation import TriggerScheduler

from loop import datasets, settings, stages
from loop.errors import StageError, exit_on_error
from pipelines import retrain

SCHEDULER_NAME = "retrain-trigger"
TRIGGER_NAME = "retrain-on-new-dataset-version"
SETTINGS_SECTION = "trigger"
ACTIVE = ["queued", "in_progress"]


def active_schedulers() -> list[Task]:
    return stages.find_tasks(settings.PROJECT, SCHEDULER_NAME, statuses=ACTIVE)


def ensure_dataset(bootstrap_folder: Path | None = None) -> str:
    """Id of the newest dataset version, creating the base version first when there is none."""
    existing = datasets.latest_version_id()
    if existing:
        return existing
    if bootstrap_folder:
        return datasets.create_version(bootstrap_folder)
    from classifier.samples import build_sample_dataset

    with tempfile.TemporaryDirectory() as tmp:
        return datasets.create_version(build_sample_dataset(Path(tmp) / "sample"))


def build_scheduler(
    pipeline_id: str, poll_minutes: float, queue: str = settings.SERVICES_QUEUE
) -> tuple[TriggerScheduler, Task]:
    """A scheduler and its task, with the dataset trigger watching from now on (later versions trigger)."""
    task, _ = _scheduler_task({"poll_minutes": poll_minutes})
    scheduler = TriggerScheduler(pooling_frequency_minutes=poll_minutes, sync_frequency_minutes=60)
    scheduler.add_dataset_trigger(
        schedule_task_id=pipeline_id,
        schedule_queue=queue,
        trigger_project=settings.DATASET_PROJECT,
        trigger_name=f"^{settings.DATASET_NAME}$",
        name=TRIGGER_NAME,
        task_parameters={"Args/dataset_id": "${dataset.id}"},
    )
    if not scheduler.get_triggers():
        raise StageError(f"no dataset project under {settings.DATASET_PROJECT!r} to watch; create a version first")
    for trigger in scheduler.get_triggers():
        trigger.last_update = datetime.now(timezone.utc)
    task.set_comment(f"Clones pipeline {pipeline_id} for each new version of {settings.DATASET_NAME}")
    return scheduler, task


def _scheduler_task(options: dict) -> tuple[Task, dict]:
    """The scheduler's own task (under an agent: the task being executed) and its connected settings."""
    stages.standalone_code()
    task = Task.init(
        project_name=settings.PROJECT,
        task_name=SCHEDULER_NAME,
        task_type=Task.TaskTypes.service,
        reuse_last_task_id=False,
        auto_connect_arg_parser=False,
        auto_connect_frameworks=False,
        auto_resource_monitoring=False,
    )
    return task, task.connect(options, name=SETTINGS_SECTION)


def run_scheduler() -> None:
    """What the scheduler task runs under a `services` agent: restore the triggers and poll forever."""
    _, options = _scheduler_task({"poll_minutes": 1.0})
    TriggerScheduler(pooling_frequency_minutes=float(options["poll_minutes"]), sync_frequency_minutes=60).start()


def register(
    queue: str = settings.SERVICES_QUEUE,
    foreground: bool = False,
    poll_minutes: float = 1.0,
    replace: bool = False,
    bootstrap_folder: Path | None = None,
) -> str:
    """Start the scheduler (remotely on `queue`, or in this process); returns the scheduler task id."""
    running = active_schedulers()
    if running and not replace:
        print(f"scheduler already registered: {running[0].id} ({running[0].status}); nothing to do")
        return running[0].id
    for task in running:
        task.mark_stopped(force=True, status_message="replaced by a new registration")
    pipeline_id = retrain.registered_pipeline_id()
    if not pipeline_id:
        raise StageError("no registered pipeline: run `python -m pipelines.retrain register` first")
    dataset_id = ensure_dataset(bootstrap_folder)
    print(f"dataset {settings.DATASET_PROJECT}/{settings.DATASET_NAME} newest version: {dataset_id}")
    scheduler, task = build_scheduler(pipeline_id, poll_minutes, queue)
    # Either way the task can later be cloned and enqueued on `services` from the UI.
    stages.set_literal_script(task, "triggers.retrain_trigger:run_scheduler", "retrain_trigger.py")
    if foreground:
        print(f"scheduler {task.id} polling every {poll_minutes} minutes in this process")
        scheduler.start()
    print(f"scheduler {task.id} enqueued on {queue}")
    scheduler.start_remotely(queue=queue)
    return task.id


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", default=settings.SERVICES_QUEUE, help="queue of the scheduler and the runs")
    parser.add_argument("--foreground", action="store_true", help="run the scheduler in this process")
    parser.add_argument("--poll-minutes", type=float, default=1.0, help="how often to look for new versions")
    parser.add_argument("--replace", action="store_true", help="stop a running scheduler and start a new one")
    parser.add_argument("--bootstrap-folder", type=Path, help="base version to create if the dataset has none")
    args = parser.parse_args(argv)
    register(args.queue, args.foreground, args.poll_minutes, args.replace, args.bootstrap_folder)


if __name__ == "__main__":
    main()

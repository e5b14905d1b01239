"""Give the server of this process's ClearML configuration a real loop history, as a team's would be, and print
it as JSON (to OUT): templates and pipeline registered, a base dataset version (cats and dogs) and a first pipeline run,
the trigger service on `services`, two feedback versions (one with a new class) that it turns into two more
runs, and one rollback. Needs agents on `services` (services mode), `default` and `gpu`.

    python -m tests.loop.loop_history DATA_FOLDER OUT
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clearml import Task

from common.waiting import wait_until
from devstack.processes import independent_environ
from loop import datasets, registry, settings, stages
from pipelines import retrain
from tests import support
from triggers import retrain_trigger

RUN_TIMEOUT = 300
ENDED = ("completed", "failed", "stopped", "published")


def finished(run_id: str) -> str:
    status = wait_until(
        lambda: (status := Task.get_task(task_id=run_id).status) in ENDED and status, RUN_TIMEOUT, f"run {run_id}"
    )
    assert status == "completed", f"pipeline run {run_id} ended {status}"
    return run_id


def triggered_run(after: set[str]) -> str:
    """The run the trigger service starts for a new version (once it has set the run's dataset)."""
    runs = wait_until(
        lambda: [
            run
            for run in stages.find_tasks(settings.PIPELINE_PROJECT, None, tags=[retrain_trigger.TRIGGER_NAME])
            if run.id not in after and run.get_parameter("Args/dataset_id")
        ],
        RUN_TIMEOUT,
        "the trigger service to start a run",
    )
    return finished(runs[0].id)


def main(data: Path, out: Path) -> None:
    Task.force_store_standalone_script()
    retrain.register(mode="head", epochs=3)
    base = datasets.create_version(support.image_folder(data / "base", ["cat", "dog"], 12))
    runs = [finished(retrain.enqueue_run(base))]
    # Its own process (starting the scheduler remotely ends the process that starts it), not a child of this
    # process's task (the pipeline's draft made this process one).
    command = [sys.executable, "-m", "triggers.retrain_trigger", "--poll-minutes", "0.05"]
    subprocess.run(command, env=independent_environ(), check=True, timeout=RUN_TIMEOUT)
    versions = [base]
    for name, classes, start in (("rabbits", ["rabbit"], 0), ("more", ["cat", "dog"], 100)):
        folder = support.image_folder(data / name, classes, 8, start=start)
        versions.append(datasets.create_version(folder, parent_id=datasets.latest_version_id()))
        runs.append(triggered_run(set(runs)))
    promoted = registry.production_model().id
    _, production = registry.rollback()
    history = {"versions": versions, "runs": runs, "rolled_back": promoted, "production": production}
    out.write_text(json.dumps(history))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""A StageError is raised inside and turned into a message and exit code 1 only at entry points; the app's
worker threads survive it."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from clearml import InputModel, Task

from app.model_holder import ModelHolder
from app.registry import RegistryWatcher
from loop import registry, settings, stages
from loop.errors import EXIT_CODE, StageError
from tasks import rollback


def test_an_entry_point_turns_a_stage_error_into_its_message_and_exit_code_1(clearml_server, capsys):
    project = f"errors-{uuid.uuid4().hex[:8]}"
    with pytest.raises(SystemExit) as exit_info:
        rollback.main(["--project", project])
    assert exit_info.value.code == EXIT_CODE
    assert f"error: no production model in project {project!r}" in capsys.readouterr().err


def test_the_stage_runner_fails_the_stage_with_the_message(clearml_server, capsys):
    def run(task: Task, params: dict):
        raise StageError(f"{params['needed']!r} is not enough")

    stage = stages.Stage("failing", Task.TaskTypes.qc, {"needed": ""}, run, "a stage that fails")
    with pytest.raises(SystemExit) as exit_info:
        stages.main(stage, ["--needed", "little"])
    assert exit_info.value.code == EXIT_CODE
    assert "error: failing: 'little' is not enough" in capsys.readouterr().err


def test_the_stage_runner_returns_what_the_stage_returns(clearml_server):
    stage = stages.Stage("passing", Task.TaskTypes.qc, {"x": 1}, lambda task, params: params["x"] + 1, "adds one")
    assert stages.main(stage, ["--x", "41"]) == 42


def test_a_model_without_weights_is_a_stage_error_and_the_watcher_keeps_running(clearml_server):
    project = f"errors-{uuid.uuid4().hex[:8]}"
    broken = InputModel.import_model(
        weights_url=f"{os.environ['CLEARML_FILES_HOST']}/{project}/missing.pt",
        name="no weights",
        project=project,
        tags=[settings.PRODUCTION_TAG],
        create_as_published=True,
    )
    with pytest.raises(StageError, match=f"model {broken.id}"):
        registry.download_model(broken.id)
    watcher = RegistryWatcher(ModelHolder(), project, settings.PRODUCTION_TAG, interval_s=0.05)
    with pytest.raises(StageError):
        watcher.check_once()
    watcher.start()
    try:
        time.sleep(0.5)  # several ticks, each failing to load the model
        assert watcher._thread.is_alive()
    finally:
        watcher.stop()
    assert watcher.holder.current() is None

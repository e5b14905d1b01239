"""Every entry point documents its parameters with --help, without touching a server."""

from __future__ import annotations

import importlib

import pytest

ENTRY_POINTS = {
    "tasks.prepare_data": ["--dataset-id", "--val-fraction", "--min-side"],
    "tasks.train": ["--prepare-task-id", "--parent-model-id", "--mode", "--epochs", "--backbone", "--lr"],
    "tasks.evaluate": ["--prepare-task-id", "--model-id", "--production-model-id"],
    "tasks.register_model": ["--evaluate-task-id", "--tolerance", "--log-loss-tolerance"],
    "tasks.register": [],
    "tasks.rollback": ["--project"],
    "tasks.bootstrap_dataset": ["--folder", "--sample", "--petimages", "--archive"],
    "triggers.retrain_trigger": ["--queue", "--foreground", "--poll-minutes", "--replace"],
}


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_lists_every_parameter(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ENTRY_POINTS[module]:
        assert option in text


@pytest.mark.parametrize("command", ["register", "run"])
def test_pipeline_commands_take_the_pipeline_parameters(command, capsys):
    from pipelines import retrain

    with pytest.raises(SystemExit):
        retrain.main([command, "--help"])
    text = capsys.readouterr().out
    for option in ("--mode", "--epochs", "--backbone", "--tolerance", "--log-loss-tolerance", "--train-queue"):
        assert option in text
    assert ("--dataset-id" in text) == (command == "run")


def test_a_bad_value_is_refused_before_anything_runs(capsys):
    from tasks import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(["--epochs", "three"])
    assert exit_info.value.code == 2
    assert "--epochs" in capsys.readouterr().err

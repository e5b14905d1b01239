"""Flows (a), (b), (c)+(g) and (f) of issue 2 with the real clearml SDK (in this process) and clearml-agent."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from server_testing import login, ok

from devstack.agents import execute_task

SCRIPTS = Path(__file__).parent / "scripts"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.slow
def test_training_run_with_scalars_artifact_and_published_model(clearml_server, tmp_path):
    """(a) Task.init -> scalars -> artifact -> OutputModel with tags -> publish -> close; (f) registry query."""
    from clearml import InputModel, Model, OutputModel, Task

    project = unique("flow-a")
    task = Task.init(project_name=project, task_name="train", reuse_last_task_id=False, output_uri=True)
    task.connect({"lr": 0.1, "epochs": 3})
    for iteration, loss in enumerate([0.9, 0.5, 0.4]):
        task.get_logger().report_scalar("loss", "train", loss, iteration=iteration)
    task.upload_artifact("summary", {"classes": ["cat", "dog"]}, wait_on_upload=True)
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"weights" * 1000)
    published = OutputModel(task=task, name="classifier", framework="PyTorch", tags=["production"])
    published.update_weights(str(weights), auto_delete_file=False)
    published.publish()
    draft = OutputModel(task=task, name="classifier-draft", framework="PyTorch", tags=["production"])
    draft.update_weights(str(weights), auto_delete_file=False)
    task_id = task.id
    task.close()

    stored = Task.get_task(task_id=task_id)
    assert stored.status == "completed"
    assert stored.get_parameters()["General/lr"] == "0.1"
    assert stored.get_last_scalar_metrics()["loss"]["train"] == {"last": 0.4, "min": 0.4, "max": 0.9}
    assert stored.artifacts["summary"].get() == {"classes": ["cat", "dog"]}
    assert stored.artifacts["summary"].url.startswith(clearml_server.files_url)

    model = Model(published.id)
    assert model.published and model.tags == ["production"]
    assert model.url.startswith(clearml_server.files_url)
    found = Model.query_models(project_name=project, tags=["production"], only_published=True)
    assert [m.id for m in found] == [published.id]
    assert {m.id for m in Model.query_models(project_name=project, tags=["production"])} == {published.id, draft.id}
    assert Path(InputModel(published.id).get_local_copy()).read_bytes() == weights.read_bytes()


@pytest.mark.slow
def test_dataset_versions_resolve_newest_and_merge_parents(clearml_server, tmp_path):
    """(b) Dataset.create, child version with parent_datasets, upload, finalize, get, get_local_copy, list."""
    from clearml import Dataset

    project = unique("flow-b")
    for version, name in ((1, "cat.txt"), (2, "dog.txt")):
        (tmp_path / f"v{version}").mkdir()
        (tmp_path / f"v{version}" / name).write_text(name)
    first = Dataset.create(dataset_name="photos", dataset_project=project)
    first.add_files(tmp_path / "v1")
    first.upload()
    first.finalize()
    second = Dataset.create(dataset_name="photos", dataset_project=project, parent_datasets=[first.id])
    second.add_files(tmp_path / "v2")
    second.upload()
    second.finalize()
    draft = Dataset.create(dataset_name="photos", dataset_project=project, parent_datasets=[second.id])

    newest = Dataset.get(dataset_project=project, dataset_name="photos", only_completed=True)
    assert newest.id == second.id
    local = Path(newest.get_local_copy())
    assert sorted(p.name for p in local.rglob("*") if p.is_file()) == ["cat.txt", "dog.txt"]
    listed = Dataset.list_datasets(dataset_project=project, partial_name="photos", only_completed=True)
    assert sorted(d["id"] for d in listed) == sorted([first.id, second.id])
    assert draft.id not in {d["id"] for d in listed}


@pytest.mark.slow  # clearml-agent executes the task
def test_create_clone_parameters_enqueue_then_agent_execute(clearml_server, clearml_env, tmp_path):
    """(c) Task.create, Task.clone, set_parameters, Task.enqueue(queue_name=...); (g) clearml-agent execute --id."""
    from clearml import Task

    project = unique("flow-c")
    script = tmp_path / "step.py"
    shutil.copy(SCRIPTS / "step.py", script)
    base = Task.create(project_name=project, task_name="base-step", script=str(script), packages=False)
    clone = Task.clone(source_task=base, name="tuned-step")
    clone.set_parameters({"General/lr": 0.25})
    Task.enqueue(clone, queue_name="default")

    token = login(clearml_server)
    assert ok(clearml_server, "tasks.get_by_id", token, task=clone.id)["task"]["status"] == "queued"
    assert ok(clearml_server, "tasks.get_by_id", token, task=clone.id)["task"]["parent"] == base.id
    default = ok(clearml_server, "queues.get_all", token, name="^default$")["queues"][0]
    assert clone.id in [entry["task"] for entry in default["entries"]]

    result = execute_task(clearml_env, tmp_path / "agent", clone.id, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    clone.reload()
    assert clone.status == "completed"
    assert clone.get_last_scalar_metrics()["params"]["lr"]["last"] == 0.25
    assert "step running with lr=0.25" in "".join(clone.get_reported_console_output(number_of_reports=100))
    assert base.status == "created"
    default = ok(clearml_server, "queues.get_all", token, name="^default$")["queues"][0]
    assert clone.id not in [entry["task"] for entry in default["entries"]]

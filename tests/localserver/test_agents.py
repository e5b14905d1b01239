"""Real clearml-agent daemons against the session server: queue races, pipelines (d) and dataset triggers (e)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from server_testing import login, ok

from common.waiting import wait_until

SCRIPTS = Path(__file__).parent / "scripts"


def pipeline_tasks(project: str, name_pattern: str) -> list:
    """Tasks of the pipeline "pipe" in ``project`` (they live in the hidden ``<project>/.pipelines/pipe``)."""
    from clearml import Task

    hidden = {"search_hidden": True, "_allow_extra_fields_": True}
    return Task.get_tasks(project_name=f"{project}/.pipelines/pipe", task_name=name_pattern, task_filter=hidden)


def register_script_task(project: str, name: str, script: Path, tmp_path: Path):
    """A task whose code is the script text (outside any git checkout, so agents need no clone)."""
    from clearml import Task

    copy = tmp_path / script.name
    shutil.copy(script, copy)
    return Task.create(project_name=project, task_name=name, script=str(copy), packages=False)


@pytest.mark.slow
def test_two_agents_racing_on_one_queue_run_each_task_once(clearml_server, start_agent, tmp_path, monkeypatch):
    from clearml import Task

    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKER_DIR", str(markers))  # inherited by the agents and the tasks they run
    queue = f"race-{uuid.uuid4().hex[:6]}"
    token = login(clearml_server)
    queue_id = ok(clearml_server, "queues.create", token, name=queue)["id"]
    template = register_script_task(f"race-{queue}", "marker", SCRIPTS / "marker.py", tmp_path)
    task_ids = []
    for index in range(4):
        task = Task.clone(source_task=template, name=f"marker-{index}")
        Task.enqueue(task, queue_id=queue_id)
        task_ids.append(task.id)
    agents = [start_agent(queue, poll_sec=0.2), start_agent(queue, poll_sec=0.2)]

    def all_done():
        statuses = [ok(clearml_server, "tasks.get_by_id", token, task=t)["task"]["status"] for t in task_ids]
        return all(s in ("completed", "failed") for s in statuses) and statuses

    statuses = wait_until(all_done, 150, "the race tasks to finish", interval=1)
    assert statuses == ["completed"] * len(task_ids), [a.log_text()[-2000:] for a in agents]
    runs = [p.name.split(".")[0] for p in markers.iterdir()]
    assert sorted(runs) == sorted(task_ids), "every task must run exactly once"
    workers = {p.read_text() for p in markers.iterdir()}
    assert workers <= {a.worker_id for a in agents}
    assert ok(clearml_server, "queues.get_by_id", token, queue=queue_id)["queue"]["entries"] == []


@pytest.mark.slow
def test_pipeline_from_registered_tasks_runs_locally(clearml_server, run_python, tmp_path):
    """(d) PipelineController.start_locally(run_pipeline_steps_locally=True)."""
    from clearml import Task

    project = f"pipeline-local-{uuid.uuid4().hex[:6]}"
    register_script_task(project, "base-step", SCRIPTS / "step.py", tmp_path)
    shutil.copy(SCRIPTS / "pipeline.py", tmp_path / "pipeline.py")
    result = run_python(tmp_path / "pipeline.py", "local", env={"PIPELINE_PROJECT": project}, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:]
    steps = pipeline_tasks(project, "^step-")
    assert sorted((s.name, s.status) for s in steps) == [("step-one", "completed"), ("step-two", "completed")]
    for step in steps:
        assert step.get_parameters()["General/lr"] == "0.3"
        assert step.get_last_scalar_metrics()["params"]["lr"]["last"] == 0.3
    controller = Task.get_task(task_id=result.stdout.split("controller ")[-1].split()[0])
    assert controller.status == "completed"


@pytest.mark.slow
def test_pipeline_runs_remotely_on_services_and_default_agents(
    clearml_server, run_python, start_agent, tmp_path, monkeypatch
):
    """(d) PipelineController.start(queue="services"): controller on a services agent, steps on a second one."""
    project = f"pipeline-remote-{uuid.uuid4().hex[:6]}"
    step_queue = f"steps-{uuid.uuid4().hex[:6]}"  # not "default": other tests may leave tasks queued there
    # The services agent passes its environment on to the controller it runs.
    monkeypatch.setenv("PIPELINE_PROJECT", project)
    monkeypatch.setenv("PIPELINE_STEP_QUEUE", step_queue)
    register_script_task(project, "base-step", SCRIPTS / "step.py", tmp_path)
    start_agent("services", services_mode=True, create_queue=True, poll_sec=0.5)
    start_agent(step_queue, create_queue=True, poll_sec=0.5)
    shutil.copy(SCRIPTS / "pipeline.py", tmp_path / "pipeline.py")
    result = run_python(tmp_path / "pipeline.py", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]
    (controller,) = pipeline_tasks(project, "^pipe$")

    def finished():
        controller.reload()
        return controller.status in ("completed", "failed", "stopped") and controller.status

    assert wait_until(finished, 240, "the remote pipeline", interval=2) == "completed"
    steps = pipeline_tasks(project, "^step-")
    assert sorted((s.name, s.status) for s in steps) == [("step-one", "completed"), ("step-two", "completed")]
    assert all(s.get_last_scalar_metrics()["params"]["lr"]["last"] == 0.3 for s in steps)


@pytest.mark.slow
def test_dataset_trigger_launches_one_job_per_new_version(clearml_server, tmp_path):
    """(e) TriggerScheduler.add_dataset_trigger, polled by calling its _step() directly."""
    from clearml import Dataset, Task
    from clearml.automation import TriggerScheduler

    project = f"trigger-{uuid.uuid4().hex[:6]}"
    queue = f"retrain-{uuid.uuid4().hex[:6]}"
    token = login(clearml_server)
    queue_id = ok(clearml_server, "queues.create", token, name=queue)["id"]

    def new_version(index, parents=None):
        folder = tmp_path / f"v{index}"
        folder.mkdir()
        (folder / f"photo{index}.txt").write_text(str(index))
        dataset = Dataset.create(dataset_name="photos", dataset_project=project, parent_datasets=parents)
        dataset.add_files(folder)
        dataset.upload()
        dataset.finalize()
        return dataset

    first = new_version(1)  # the dataset project must exist before the trigger is added
    template = register_script_task(project, "retrain", SCRIPTS / "step.py", tmp_path)
    scheduler = TriggerScheduler(
        pooling_frequency_minutes=0.05, force_create_task_name="scheduler", force_create_task_project=project
    )
    scheduler.add_dataset_trigger(
        schedule_task_id=template.id,
        schedule_queue=queue,
        trigger_project=project,
        name="retrain-on-new-data",
        task_parameters={"General/dataset_id": "${dataset.id}"},
    )
    scheduler._step()
    assert ok(clearml_server, "queues.get_by_id", token, queue=queue_id)["queue"]["entries"] == []
    second = new_version(2, [first.id])
    scheduler._step()
    scheduler._step()
    third = new_version(3, [second.id])
    scheduler._step()
    scheduler._step()

    entries = ok(clearml_server, "queues.get_by_id", token, queue=queue_id)["queue"]["entries"]
    jobs = [Task.get_task(task_id=entry["task"]) for entry in entries]
    assert [job.get_parameters()["General/dataset_id"] for job in jobs] == [second.id, third.id]
    assert all(job.parent and job.status == "queued" for job in jobs)

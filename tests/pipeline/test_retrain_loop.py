"""End to end: dataset versions -> TriggerScheduler -> PipelineController on real agents -> production model,
and clearml-serving's endpoint following it through the pipeline's promotion and a rollback.

Three real `clearml-agent` daemons in this Python environment: `services` (services mode: controllers),
`default` (prepare/evaluate/register) and `gpu` (train). The scheduler's poll (`_step`) is called directly.
The tests run in file order and build on each other's state.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clearml import Model, Task

from classifier.samples import real_photos
from common.waiting import wait_until
from devstack import agents
from devstack.clearml_serving import start_inference, wait_until_serving
from devstack.processes import free_port
from loop import clearml_serving, datasets, registry, sdk_private, settings, stages
from pipelines import retrain
from tasks import STAGES, register
from tests import support
from triggers import retrain_trigger

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 300
FINISHED = ("completed", "failed", "stopped", "published")


@pytest.fixture(scope="module")
def env(clearml_env):
    return {**clearml_env, retrain.POOL_MINUTES_ENV: "0.02"}


@pytest.fixture(scope="module")
def workers(env, clearml_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("loop-agents")
    started = {
        queue: agents.start_agent(env, work, queue=queue, services_mode=queue == "services", create_queue=True)
        for queue in ("services", "default", "gpu")
    }
    yield started
    for agent in started.values():
        agent.stop()
    # The session's server (started after the client variables were set) shares them and keeps running.
    leftovers = _processes_with(env["CLEARML_CONFIG_FILE"], besides={clearml_server.pid})
    assert not leftovers, f"processes left running: {leftovers}"


@pytest.fixture(scope="module")
def loop(env, workers, tmp_path_factory):
    """Templates and pipeline registered, agents up, and the base dataset version (cats and dogs)."""
    data = tmp_path_factory.mktemp("loop-data")
    register.register_templates()
    support.run_module(env, "pipelines.retrain", "register", "--mode", "head", "--epochs", "3")
    pipeline_id = retrain.registered_pipeline_id()
    assert pipeline_id
    state = {"data": data, "pipeline_id": pipeline_id, "workers": workers}
    state["base"] = datasets.create_version(support.image_folder(data / "base", ["cat", "dog"], 12))
    yield state
    if "scheduler_task" in state:
        state["scheduler_task"].close()


@pytest.fixture(scope="module")
def scheduler(loop):
    built, loop["scheduler_task"] = retrain_trigger.build_scheduler(loop["pipeline_id"], poll_minutes=0.05)
    return built


@pytest.fixture(scope="module")
def inference(loop, env, tmp_path_factory):
    """clearml-serving's inference service on the loop's production model (ask for it once there is one)."""
    service = clearml_serving.set_up()
    started = start_inference(env, service.id, free_port(), tmp_path_factory.mktemp("serving"))
    photo = real_photos()[0][0].read_bytes()
    wait_until_serving(started, photo)
    yield started, photo
    started.stop()  # before the agents' fixture looks for leftover processes


def wait_finished(task_id: str) -> str:
    return wait_until(
        lambda: (status := Task.get_task(task_id=task_id).status) in FINISHED and status,
        RUN_TIMEOUT,
        f"pipeline run {task_id}",
        interval=2,
    )


def triggered_runs() -> list[Task]:
    return stages.find_tasks(settings.PIPELINE_PROJECT, None, tags=[retrain_trigger.TRIGGER_NAME])


def new_version(loop, name: str, classes: list[str], start: int) -> str:
    folder = support.image_folder(loop["data"] / name, classes, 8, start=start)
    return datasets.create_version(folder, parent_id=datasets.latest_version_id())


def test_base_version_trains_the_first_production_model(loop):
    run_id = retrain.enqueue_run(loop["base"])
    assert wait_finished(run_id) == "completed"
    production = registry.production_model()
    assert production.published
    assert production.metadata["dataset_id"] == loop["base"]
    assert {"cat", "dog"} <= set(production.labels)
    steps = {t.name: t for t in Task.get_tasks(task_filter={"parent": run_id, "search_hidden": True})}
    assert set(steps) == set(STAGES)
    # The parameters given at registration reach the steps of a run cloned from the draft.
    assert steps["train"].get_parameter("General/epochs") == "3"
    assert steps["train"].get_parameter("General/mode") == "head"
    assert steps["train"].id in loop["workers"]["gpu"].log_text(), "train must run on the GPU queue"
    assert steps["prepare_data"].id in loop["workers"]["default"].log_text()
    loop["first_production"] = production.id


def test_a_version_with_a_new_class_triggers_one_run_that_grows_the_model(loop, scheduler, inference):
    endpoint, photo = inference
    load = support.EndpointRequests(endpoint.url(), photo)
    load.start()
    assert not sdk_private.poll_triggers_once(scheduler), "no new version yet"
    child = new_version(loop, "rabbits", ["rabbit"], 0)
    assert sdk_private.poll_triggers_once(scheduler)
    assert not sdk_private.poll_triggers_once(scheduler), "a version triggers once"
    runs = triggered_runs()
    assert len(runs) == 1
    assert runs[0].get_parameter("Args/dataset_id") == child
    assert wait_finished(runs[0].id) == "completed"

    old = Model(model_id=loop["first_production"])
    grown = registry.production_model()
    assert grown.id != old.id and grown.published
    assert set(grown.labels) == set(old.labels) | {"rabbit"}
    assert settings.PRODUCTION_TAG not in old.tags
    assert grown.metadata["dataset_id"] == child
    assert grown.metadata["parent_model_id"] == old.id
    # clearml-serving answered across the pipeline's promotion, first with the old model, then with the grown one.
    wait_until(lambda: load.first_answer_from(grown.id, 0), 60, "clearml-serving to answer with the grown model")
    assert load.stop() == {200}
    assert load.classes[old.id] == set(old.labels) and load.classes[grown.id] == set(grown.labels)


def test_two_new_versions_start_two_runs_that_end_with_one_production_model(loop, scheduler):
    before = {run.id for run in triggered_runs()}
    versions = {new_version(loop, "more-a", ["cat", "dog"], 100), new_version(loop, "more-b", ["cat", "dog"], 200)}
    observer = support.RegistryObserver(settings.PROJECT, interval=0.05)
    observer.start()
    try:
        assert sdk_private.poll_triggers_once(scheduler)
        assert not sdk_private.poll_triggers_once(scheduler)
        runs = [run for run in triggered_runs() if run.id not in before]
        assert {run.get_parameter("Args/dataset_id") for run in runs} == versions
        assert [wait_finished(run.id) for run in runs] == ["completed", "completed"]
    finally:
        support.assert_never_none_nor_two(observer.finish())
    tagged = registry.list_models(settings.PROJECT, settings.PRODUCTION_TAG, include_archived=True)
    assert [model.id for model in tagged] == [registry.production_model().id]
    # Each run's register_model step records what its candidate was compared with, and the promotions chain:
    # a run that promoted after the other compared with the other's model, not with the model both started from.
    decisions = [stages.task_artifact(step(run.id, "register_model").id, "decision") for run in runs]
    assert all(decision["compared_with"] and decision["judgements"] for decision in decisions)
    promoted = sorted(
        (d for d in decisions if d["promoted"]), key=lambda d: registry.find_model(d["model_id"]).promotion_seq
    )
    assert promoted, decisions
    for earlier, later in zip(promoted, promoted[1:], strict=False):
        assert later["compared_with"] == earlier["model_id"]
    assert tagged[0].id == promoted[-1]["model_id"]
    assert registry.production_model().metadata["dataset_id"] in versions


def step(run_id: str, name: str) -> Task:
    (found,) = [t for t in Task.get_tasks(task_filter={"parent": run_id, "search_hidden": True}) if t.name == name]
    return found


def test_a_failing_step_fails_the_run_and_keeps_production(loop):
    production = registry.production_model().id
    run_id = retrain.enqueue_run("no-such-dataset")
    assert wait_finished(run_id) == "failed"
    steps = {t.name: t.status for t in Task.get_tasks(task_filter={"parent": run_id, "search_hidden": True})}
    assert steps == {"prepare_data": "failed"}
    assert registry.production_model().id == production


def test_the_trigger_command_starts_one_scheduler_service_that_retrains(loop, env):
    support.run_module(env, "triggers.retrain_trigger", "--poll-minutes", "0.05")
    again = support.run_module(env, "triggers.retrain_trigger", "--poll-minutes", "0.05")
    assert "already registered" in again.stdout
    (service,) = retrain_trigger.active_schedulers()
    before = {run.id for run in triggered_runs()}
    version = new_version(loop, "foxes", ["fox"], 0)
    # The scheduler clones the run (tagged) first and sets its parameters next: wait for both.
    run = wait_until(
        lambda: [r for r in triggered_runs() if r.id not in before and r.get_parameter("Args/dataset_id")],
        120,
        "the scheduler service to start a run",
    )
    assert [r.get_parameter("Args/dataset_id") for r in run] == [version]
    assert wait_finished(run[0].id) == "completed"
    assert "fox" in registry.production_model().labels
    assert [t.id for t in retrain_trigger.active_schedulers()] == [service.id]


def test_run_local_runs_the_controller_and_its_steps_in_local_processes(loop, env):
    newest = datasets.latest_version_id()
    result = support.run_module(env, "pipelines.retrain", "run", "--local", timeout=300)
    assert "pipeline completed" in result.stdout
    assert registry.production_model().metadata["dataset_id"] == newest


def test_rollback_moves_production_to_the_previous_published_model(loop, inference):
    current = registry.production_model()
    published = [m for m in Model.query_models(project_name=settings.PROJECT, only_published=True)]
    old, new = registry.rollback()
    assert old == current.id
    assert new != old and new in {m.id for m in published}
    assert registry.production_model().id == new
    assert settings.PRODUCTION_TAG not in Model(model_id=old).tags
    endpoint, photo = inference
    load = support.EndpointRequests(endpoint.url(), photo)
    load.start()
    wait_until(lambda: load.first_answer_from(new, 0), 60, "clearml-serving to answer with the rolled-back model")
    assert load.stop() == {200}


def test_nothing_is_left_queued_or_running(loop):
    busy = stages.find_tasks(settings.PIPELINE_PROJECT, None, statuses=["queued", "in_progress"])
    assert not busy, [(t.name, t.status) for t in busy]


def _processes_with(marker: str, besides: set[int]) -> list[str]:
    """Pid and command line of each process (but this one and `besides`) whose environment mentions `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in {os.getpid(), *besides}:
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:300]}")
        except OSError:
            continue
    return found

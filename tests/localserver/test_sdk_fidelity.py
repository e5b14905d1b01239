"""What the real SDK reads back: debug-image paging, downsampled scalars, search_text, and the stop handshake
between tasks.stop and the agent running the task."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from server_testing import login, ok
from test_agents import register_script_task

from common.waiting import wait_until

SCRIPTS = Path(__file__).parent / "scripts"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.slow
def test_debug_samples_page_by_metric_variant_and_iteration(clearml_server):
    from clearml import Task

    task = Task.init(project_name=unique("debug-images"), task_name="images", reuse_last_task_id=False)
    logger = task.get_logger()
    for iteration in range(150):
        for series in ("left", "right"):
            logger.report_image("samples", series, iteration=iteration, url=f"http://img/{series}/{iteration}.png")
        logger.report_image("other", "left", iteration=iteration, url=f"http://img/other/{iteration}.png")
    logger.report_image("samples", "left", iteration=149, url="http://img/left/149-again.png")
    task.close()  # flushes every event
    task = Task.get_task(task_id=task.id)

    latest = task.get_debug_samples("samples", "left", n_last_iterations=1)
    assert [(e["metric"], e["variant"], e["iter"], e["url"]) for e in latest] == [
        ("samples", "left", 149, "http://img/left/149-again.png")
    ]
    five = task.get_debug_samples("samples", "right", n_last_iterations=5)
    assert [e["iter"] for e in five] == [149, 148, 147, 146, 145]
    assert {e["variant"] for e in five} == {"right"}
    default = task.get_debug_samples("samples", "left")  # the SDK stops after MAX_SERIES_PER_METRIC (100)
    assert [e["iter"] for e in default] == list(range(149, 49, -1))
    everything = task.get_debug_samples("samples", "left", n_last_iterations=1000)  # pages until empty
    assert sorted(e["iter"] for e in everything) == list(range(150))


@pytest.mark.slow
def test_reported_scalars_are_downsampled_to_the_requested_samples(clearml_server):
    from clearml import Task

    task = Task.init(project_name=unique("scalars"), task_name="many-points", reuse_last_task_id=False)
    logger = task.get_logger()
    for iteration in range(12000):
        logger.report_scalar("loss", "train", float(iteration % 100), iteration=iteration)
    logger.report_scalar("loss", "val", 1.0, iteration=0)
    task_id = task.id
    task.close()

    stored = Task.get_task(task_id=task_id)
    sampled = stored.get_reported_scalars(max_samples=100)["loss"]
    train = sampled["train"]
    assert 50 <= len(train["x"]) <= 101 and train["x"] == sorted(train["x"])
    assert train["x"][0] == 0 and train["x"][-1] <= 11999
    assert abs(sum(train["y"]) / len(train["y"]) - 49.5) < 1  # bucket averages of 0..99
    assert sampled["val"] == {"name": "val", "x": [0], "y": [1.0]}
    capped = stored.get_reported_scalars()["loss"]["train"]
    assert 2500 <= len(capped["x"]) <= 5001


def test_search_text_finds_substrings_through_the_sdk(clearml_server):
    from clearml import Task

    project = unique("search-text")
    needle = unique("Needle.X")
    created = []
    for name, comment in ((f"run {needle}", ""), ("plain", f"mentions {needle.upper()}"), ("Needle-X", "")):
        task = Task.create(project_name=project, task_name=name)
        task.set_comment(comment)
        created.append(task.id)
    found = Task.get_tasks(project_name=project, task_filter={"search_text": needle.lower()})
    assert sorted(t.id for t in found) == sorted(created[:2])


@pytest.mark.slow
def test_stop_keeps_an_agent_run_task_stopping_until_the_agent_acknowledges(clearml_server, start_agent, tmp_path):
    from clearml import Task

    queue = unique("stop")
    token = login(clearml_server)
    queue_id = ok(clearml_server, "queues.create", token, name=queue)["id"]
    task = register_script_task(unique("stop-handshake"), "sleeper", SCRIPTS / "sleeper.py", tmp_path)
    Task.enqueue(task, queue_id=queue_id)
    agent = start_agent(queue, poll_sec=0.5)

    def running():
        task.reload()
        logs = ok(clearml_server, "events.get_task_log", token, task=task.id)["events"]
        return task.status == "in_progress" and any("alive" in e.get("msg", "") for e in logs)

    wait_until(running, 90, "the sleeper to run on the agent", interval=0.5)
    task.mark_stop_request()
    requested = ok(clearml_server, "tasks.get_by_id", token, task=task.id)["task"]
    assert (requested["status"], requested["status_message"]) == ("in_progress", "stopping")

    def stopped():
        task.reload()
        return task.status == "stopped"

    wait_until(stopped, 60, "the agent to stop the task", interval=0.5)
    assert "Process aborted by user" in "".join(task.get_reported_console_output(number_of_reports=100)), (
        agent.log_text()[-3000:]
    )

    local = Task.create(project_name=unique("stop-local"), task_name="not-on-a-worker")
    ok(clearml_server, "tasks.started", token, task=local.id)
    local.mark_stop_request()
    local.reload()
    assert local.status == "stopped"  # no worker runs it: nothing would ever acknowledge
    shutil.rmtree(tmp_path / "agents", ignore_errors=True)

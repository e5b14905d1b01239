"""A task whose agent died mid-run (SIGKILL) is failed by the watchdog once silent past the task timeout, while a
live task that keeps reporting is left running."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from server_testing import login, ok

from common.waiting import wait_until
from devstack.agents import start_agent
from localserver import start_server_process
from localserver.watchdog import FORCED_STOP, TIMEOUT_ENV

SCRIPTS = Path(__file__).parent / "scripts"
TIMEOUT_SEC = 6


@pytest.mark.slow
def test_the_task_of_a_killed_agent_is_failed_after_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, str(TIMEOUT_SEC))
    server = start_server_process(tmp_path / "server", port=0)
    agent = None
    try:
        token = login(server)
        queue_id = ok(server, "queues.create", token, name="watched")["id"]
        task_id = ok(server, "tasks.create", token, name="sleeper", type="training")["id"]
        script = {"binary": "python3", "entry_point": "sleeper.py", "working_dir": ".", "diff": ""}
        script["diff"] = (SCRIPTS / "sleeper.py").read_text()
        ok(server, "tasks.edit", token, task=task_id, script=script)
        ok(server, "tasks.enqueue", token, task=task_id, queue=queue_id)
        agent = start_agent(server.client_env(), tmp_path / "agents", queue="watched", poll_sec=0.5)

        def status():
            return ok(server, "tasks.get_by_id", token, task=task_id)["task"]["status"]

        wait_until(lambda: status() == "in_progress", 90, "the agent to start the task", interval=0.5)
        time.sleep(TIMEOUT_SEC * 2)  # alive and reporting: the watchdog leaves it alone
        assert status() == "in_progress", agent.log_text()[-3000:]

        agent.stop()  # SIGKILL of the agent's process group: nobody reports for the task any more
        last_sign_of_life = ok(server, "tasks.get_by_id", token, task=task_id)["task"]["last_update"]
        wait_until(lambda: status() == "failed", TIMEOUT_SEC * 4, "the watchdog to fail the task", interval=0.5)
        task = ok(server, "tasks.get_by_id", token, task=task_id)["task"]
        assert (task["status_message"], task["status_reason"]) == (FORCED_STOP, FORCED_STOP)
        silent_for = datetime.fromisoformat(task["status_changed"]) - datetime.fromisoformat(last_sign_of_life)
        assert silent_for.total_seconds() >= TIMEOUT_SEC  # not failed before its timeout
    finally:
        if agent is not None:
            agent.stop()
        server.stop()

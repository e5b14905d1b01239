"""A training agent SIGKILLed mid-step: the server's watchdog fails the step, the pipeline run fails, and the
production model stays what it was.

The session's server keeps clearml-server's 2 h watchdog timeout, so this test runs its own server with a short
one, and drives it only through subprocesses and raw API calls (the SDK's configuration in this process belongs
to the session's server).
"""

from __future__ import annotations

import re

import pytest
import requests

from common.waiting import wait_until
from devstack import agents
from localserver import start_server_process
from localserver.watchdog import FORCED_STOP, TIMEOUT_ENV
from loop import settings
from pipelines import retrain
from tests import support

pytestmark = pytest.mark.slow

TASK_TIMEOUT_SEC = 8
RUN_TIMEOUT = 300


class Api:
    """Raw calls to one server (no SDK): `api("tasks.get_all", **body)` -> data."""

    def __init__(self, server):
        self.url = server.api_url
        login = requests.get(f"{self.url}/auth.login", auth=(server.access_key, server.secret_key), timeout=10)
        self.headers = {"Authorization": f"Bearer {login.json()['data']['token']}"}

    def __call__(self, endpoint: str, **body) -> dict:
        response = requests.post(f"{self.url}/{endpoint}", json=body, headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def status(self, task_id: str) -> str:
        return self("tasks.get_by_id", task=task_id)["task"]["status"]

    def step(self, run_id: str, name: str) -> dict | None:
        found = self("tasks.get_all", parent=run_id, name=f"^{name}$", search_hidden=True)["tasks"]
        return found[0] if found else None

    def production(self) -> list[str]:
        tagged = self("models.get_all", tags=[settings.PRODUCTION_TAG], ready=True, only_fields=["id"])["models"]
        return [model["id"] for model in tagged]


def start_run(env) -> str:
    printed = support.run_module(env, "pipelines.retrain", "run").stdout
    return re.search(r"pipeline run (\w+) queued", printed).group(1)


def test_a_training_agent_killed_mid_step_fails_the_run_and_keeps_production(tmp_path, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, str(TASK_TIMEOUT_SEC))
    server = start_server_process(tmp_path / "server", port=0)
    home = tmp_path / "home"
    home.mkdir()
    env = {**server.client_env(), "HOME": str(home), "CLEARML_TASK_NO_REUSE": "1", retrain.POOL_MINUTES_ENV: "0.02"}
    started = {}
    try:
        api = Api(server)
        support.run_module(env, "tasks.register")
        support.run_module(env, "pipelines.retrain", "register", "--mode", "head", "--epochs", "3")
        data = support.image_folder(tmp_path / "base", ["cat", "dog"], 12)
        support.run_module(env, "tasks.bootstrap_dataset", "--folder", str(data))
        for queue in ("services", "default", "gpu"):
            started[queue] = agents.start_agent(
                env, tmp_path / "agents", queue=queue, services_mode=queue == "services", create_queue=True
            )

        first = start_run(env)
        wait_until(lambda: api.status(first) in ("completed", "failed"), RUN_TIMEOUT, "the first run")
        assert api.status(first) == "completed"
        production = api.production()
        assert len(production) == 1

        second = start_run(env)
        train = wait_until(
            lambda: (step := api.step(second, "train")) and step["status"] == "in_progress" and step,
            RUN_TIMEOUT,
            "the second run's train step to start",
            interval=0.2,
        )
        started.pop("gpu").stop()  # SIGKILL: the agent and the step it runs, as when a machine dies

        wait_until(lambda: api.status(second) in ("completed", "failed"), RUN_TIMEOUT, "the second run to end")
        assert api.status(second) == "failed"
        step = api("tasks.get_by_id", task=train["id"])["task"]
        assert (step["status"], step["status_message"]) == ("failed", FORCED_STOP)
        assert api.step(second, "register_model") is None, "no step after the failed one"
        assert api.production() == production
    finally:
        for agent in started.values():
            agent.stop()
        server.stop()

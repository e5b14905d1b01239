"""Shared fixtures: one ClearML-compatible server per test session, started by the first test that needs it;
isolated clients; agents that always stop.

``pytest_configure`` only isolates this process: it removes inherited CLEARML_* variables and sets a temporary
``HOME`` (the SDK's ``~/.clearml`` caches), ``CLEARML_TASK_NO_REUSE=1`` and ``CLEARML_CONFIG_FILE`` (low HTTP
retries, no waiting on "maintenance", so a broken server fails a test instead of hanging it). Until a test asks
for ``clearml_server``, the API hosts point at a closed port, so SDK use without the fixture fails at once. The
fixture starts ``localserver`` as a subprocess on a free 127.0.0.1 port with the keys of that config file,
rewrites the file with the real address and points the CLEARML_* hosts at it; a session that runs no ClearML
test (``make test-fast -k classifier``) starts no server.

The SDK's configuration and its "current task" are process-global. So:
- quick SDK flows (``Task.init`` ... ``close()``, datasets, model queries) may run in the test process against
  this server; close every task a test starts;
- agents, pipeline controllers started with ``start()``, and anything that runs a ``__main__`` script, run in
  subprocesses (``run_python``, ``start_agent``), which get ``clearml_env`` and are killed by process group.
  A task still current after a test (e.g. one a TriggerScheduler created) is closed by an autouse fixture.
  Requesting ``clearml_server`` also calls ``Task.force_store_standalone_script()``: a task started from
  ``.venv/bin/pytest`` inside this git checkout can otherwise hang in git detection (protocol note, section 7).

Fixtures: ``clearml_server`` (a ``localserver.ServerProcess``: ``api_url``, ``files_url``, ``access_key``,
``secret_key``, ``data_dir``, ``client_env()``), ``clearml_env`` (the CLEARML_* dict for subprocesses),
``start_agent`` (factory; see ``devstack.agents.start_agent``) and ``run_python`` (runs a script file with the
client environment, killing its process group afterwards). Helpers: ``tests/support.py``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from devstack import agents
from devstack.processes import run_in_own_group
from localserver import client_env, start_server_process, write_client_config

# Nothing listens on the discard port; SDK calls made before the server fixture fail fast instead of going anywhere.
_NO_SERVER_YET = "http://127.0.0.1:9"
_session: dict = {}


def pytest_configure(config):
    if _session:
        return
    root = Path(tempfile.mkdtemp(prefix="clearml-tests-"))
    for key in [k for k in os.environ if k.startswith(("CLEARML_", "TRAINS_"))]:
        del os.environ[key]
    home = root / "home"
    home.mkdir()
    keys = {"access_key": secrets.token_hex(10), "secret_key": secrets.token_hex(20)}
    config_file = write_client_config(root / "clearml.conf", _NO_SERVER_YET, **keys)
    os.environ.update(client_env(_NO_SERVER_YET, config_file=config_file, **keys))
    os.environ.update(HOME=str(home), CLEARML_TASK_NO_REUSE="1")
    # gradio_client reports each Client() to Hugging Face unless told not to (its analytics_enabled=False
    # argument does not switch it off); tests stay on this machine.
    os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1")
    _session.update(root=root, keys=keys, config_file=config_file)


def _close_current_task() -> None:
    """A task left open would make the SDK's exit hooks talk to a stopped server (and retry for minutes)."""
    clearml = sys.modules.get("clearml")
    task = clearml.Task.current_task() if clearml is not None else None
    if task is not None:
        task.close()
    # Task.init marks this process as the "master" in the environment; a script started later with os.environ
    # would take itself for a forked child of that closed task and get a stub instead of its own task.
    for key in ("CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID"):
        os.environ.pop(key, None)


def _forget_recorded_exits() -> None:
    """Once a task has started in this process, the SDK's exit hook replaces `sys.exit` and records every call
    (from any thread) and every uncaught exception, and the process's later tasks then close as failed, without
    their last events. Servers that tests start in threads call `sys.exit` when their start fails on purpose
    (uvicorn: `sys.exit(3)`), so each test starts with nothing recorded."""
    clearml = sys.modules.get("clearml")
    hook = getattr(clearml.Task, "_Task__exit_hook", None) if clearml is not None else None
    if hook is not None:
        hook.exit_code = hook.exception = hook.signal = None


@pytest.fixture(autouse=True)
def _no_leftover_task():
    _forget_recorded_exits()
    yield
    _close_current_task()


def pytest_unconfigure(config):
    if _session:
        _close_current_task()
        if "server" in _session:
            _session["server"].stop()
        shutil.rmtree(_session["root"], ignore_errors=True)
        _session.clear()
    # Reap exited children (the SDK forks reporter processes); orphaned zombies would outlive the run.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


@pytest.fixture(scope="session")
def clearml_server():
    from clearml import Task

    if "server" not in _session:
        from loop import webpage

        server_dir = _session["root"] / "server"
        server = start_server_process(server_dir, port=0, web_extensions=[webpage.SPEC], **_session["keys"])
        _session["env"] = server.client_env(config_file=server.write_client_config(_session["config_file"]))
        os.environ.update(_session["env"])
        _session["server"] = server
    server = _session["server"]
    if server.process.poll() is not None:
        pytest.fail(f"the session's localserver exited; see {server.data_dir / 'server.log'}")
    # In-process tasks would start from .venv/bin/pytest inside this git checkout, where the SDK's repository
    # detection races its reporter fork and can hang the task; store the script text instead.
    Task.force_store_standalone_script()
    return server


@pytest.fixture(scope="session")
def clearml_env(clearml_server) -> dict[str, str]:
    """The client variables for subprocesses (hosts, keys, config file, HOME, no task reuse)."""
    return {k: os.environ[k] for k in (*_session["env"], "HOME", "CLEARML_TASK_NO_REUSE")}


@pytest.fixture
def start_agent(clearml_env, tmp_path):
    """``start_agent(queue="default", services_mode=False, create_queue=False)``; all are SIGKILLed at the end."""
    started: list[agents.AgentProcess] = []

    def start(queue: str = "default", **options) -> agents.AgentProcess:
        agent = agents.start_agent(clearml_env, tmp_path / "agents", queue=queue, **options)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def run_python(clearml_env):
    """``run_python(script, *args, timeout=..., env=...)`` -> CompletedProcess; its process group is killed."""

    def run(script, *args, timeout: float = 180, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **clearml_env, **(env or {})}
        return run_in_own_group([sys.executable, str(script), *map(str, args)], env=full_env, timeout=timeout, cwd=cwd)

    return run

"""Start ``clearml-agent daemon`` processes that run tasks in the current Python environment.

No virtualenv is built and nothing is installed: the agent runs each task with this interpreter
(``CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1``, ``CLEARML_AGENT_SKIP_PIP_VENV_INSTALL=sys.executable``), so the
project and clearml must be installed here. Each agent gets its own worker id, HOME (its ``~/.clearml`` caches
and venv dirs) and log file. Agents ignore SIGTERM, so :meth:`AgentProcess.stop` SIGKILLs the agent's whole
process group (the daemon and the tasks it started) and waits for it.

    agent = start_agent(server.client_env(), work_dir, queue="services", services_mode=True, create_queue=True)
    ...
    agent.stop()
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import GroupProcess, independent_environ, run_in_own_group

# How often an agent asks its queue for work: every step of a pipeline run waits for it once. A queue poll is one
# cheap call; clearml-agent's own default (5 s) would add seconds to each step.
DEFAULT_POLL_SECONDS = 0.25


@dataclass
class AgentProcess(GroupProcess):
    """An agent daemon; :meth:`stop` kills it with the tasks it runs (its process group)."""

    queue: str = ""
    worker_id: str = ""
    home: Path = Path()


def agent_env(
    client_env: dict[str, str], home: Path, worker_id: str, poll_sec: float = DEFAULT_POLL_SECONDS
) -> dict[str, str]:
    env = independent_environ()
    env.update(client_env)
    env.update(
        HOME=str(home),
        CLEARML_WORKER_ID=worker_id,
        CLEARML_WORKER_NAME=worker_id,
        CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL="1",
        CLEARML_AGENT_SKIP_PIP_VENV_INSTALL=sys.executable,
        CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=str(poll_sec),
        CLEARML_AGENT_STATUS_REPORT_FREQ_SEC="5",
        PYTHONUNBUFFERED="1",
    )
    return env


def agent_command() -> list[str]:
    return [sys.executable, "-m", "clearml_agent"]


def start_agent(
    client_env: dict[str, str],
    work_dir: str | os.PathLike,
    queue: str | Sequence[str] = "default",
    services_mode: bool = False,
    create_queue: bool = False,
    worker_id: str | None = None,
    poll_sec: float = DEFAULT_POLL_SECONDS,
) -> AgentProcess:
    """Start ``clearml-agent daemon --queue QUEUE... --foreground`` against the server described by ``client_env``.

    ``queue`` is one queue name or several, served in priority order.

    ``client_env`` holds the CLEARML_* variables (e.g. ``EmbeddedServer.client_env()``); ``work_dir`` receives
    the agent's HOME and ``agent-<worker>.log``.
    """
    queues = [queue] if isinstance(queue, str) else list(queue)
    worker_id = worker_id or f"agent-{'-'.join(queues)}-{uuid.uuid4().hex[:6]}"
    work_dir = Path(work_dir).resolve()
    home = work_dir / worker_id
    home.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"{worker_id}.log"
    command = [*agent_command(), "daemon", "--queue", *queues, "--foreground"]
    if services_mode:
        command.append("--services-mode")
    if create_queue:
        command.append("--create-queue")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=agent_env(client_env, home, worker_id, poll_sec),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return AgentProcess(process, log_path, queue=" ".join(queues), worker_id=worker_id, home=home)


def execute_task(
    client_env: dict[str, str], work_dir: str | os.PathLike, task_id: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run one task with ``clearml-agent execute --id TASK`` in the current environment (blocking)."""
    worker_id = f"execute-{task_id[:8]}"
    home = Path(work_dir).resolve() / worker_id
    home.mkdir(parents=True, exist_ok=True)
    # The task's own helper processes share the group; none may outlive the call.
    return run_in_own_group(
        [*agent_command(), "execute", "--id", task_id],
        env=agent_env(client_env, home, worker_id),
        cwd=home,
        timeout=timeout,
    )

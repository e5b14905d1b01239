"""Running and stopping the processes of the loop (agents, SDK scripts), so that none outlives its owner.

clearml's processes ignore SIGTERM and fork helpers, so everything here ends with SIGKILL: of a process group
that the child was started in, or of a whole process tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

from common.waiting import wait_until

# Set by the SDK in a process that has a task, for its own children; an independent process must not inherit
# them (it would attach to, or stub out, the parent's task).
PARENT_TASK_VARIABLES = (
    "CLEARML_TASK_ID",
    "TRAINS_TASK_ID",
    "CLEARML_PROC_MASTER_ID",
    "TRAINS_PROC_MASTER_ID",
    "CLEARML_SIMULATE_REMOTE_TASK",
    "CLEARML_LOG_TASK_TO_BACKEND",
)


T = TypeVar("T")


@dataclass
class GroupProcess:
    """A process started in a group of its own (``start_new_session=True``) with its output in ``log_path``;
    :meth:`stop` SIGKILLs the whole group and waits until it is gone."""

    process: subprocess.Popen
    log_path: Path
    pid: int = field(init=False)

    def __post_init__(self) -> None:
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout)
        with contextlib.suppress(TimeoutError):  # a member stuck in the kernel (D state) is not waited for longer
            wait_until(lambda: not _group_alive(self.pid), timeout, "the process group to end", 0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def independent_environ() -> dict[str, str]:
    """This process's environment without the variables that tie a child to this process's task."""
    return {k: v for k, v in os.environ.items() if k not in PARENT_TASK_VARIABLES}


def environ_without_clearml(**extra: str) -> dict[str, str]:
    """`independent_environ()` without any ClearML client variable (they would override a child's configuration
    file), and with `extra`."""
    return {k: v for k, v in independent_environ().items() if not k.startswith(("CLEARML_", "TRAINS_"))} | extra


def run_in_own_group(
    command: Sequence[str], env: dict[str, str], timeout: float, cwd=None
) -> subprocess.CompletedProcess:
    """Run `command` in a new process group, output merged into `stdout`; the group is SIGKILLed afterwards."""
    process = subprocess.Popen(
        list(command),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


def kill_tree(pid: int, timeout: float = 10) -> None:
    """SIGKILL a process and every descendant, even those that started a session of their own."""
    try:
        root = psutil.Process(pid)
        family = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(family, timeout=timeout)

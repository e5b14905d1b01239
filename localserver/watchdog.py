"""The non-responsive task watchdog: a task left ``in_progress`` by a worker that died is marked ``failed``.

A running task shows life through every write to it (``last_update``): the agent's ``tasks.ping`` (every 60 s by
default) and ``workers.status_report`` naming the task, the console lines and scalars it reports, status
changes. When ``last_update`` of an ``in_progress`` task is older than the timeout, the watchdog fails the task
with the status message "Forced stop (non-responsive)", as clearml-server does; a pipeline controller waiting on
it then sees a failed step. The default timeout, 7,200 s, is clearml-server's default threshold for its
non-responsive task watchdog; ``python -m localserver serve --task-timeout`` or the environment variable
``LOCALSERVER_TASK_TIMEOUT_SEC`` sets it (tests use a few seconds).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone

from .api import Context
from .api import tasks as tasks_api
from .users import ADMIN_ID

DEFAULT_TASK_TIMEOUT_SEC = 7200.0
TIMEOUT_ENV = "LOCALSERVER_TASK_TIMEOUT_SEC"
FORCED_STOP = "Forced stop (non-responsive)"

log = logging.getLogger("localserver")


def timeout_from_env(default: float = DEFAULT_TASK_TIMEOUT_SEC) -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return default
    try:
        timeout = float(value)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds, not {value!r}") from None
    if not timeout > 0:
        raise ValueError(f"{TIMEOUT_ENV} must be positive")
    return timeout


class Watchdog:
    """Checks every ``interval_sec`` (default: a fifth of the timeout, at most a minute) in a daemon thread."""

    def __init__(self, server, timeout_sec: float, interval_sec: float | None = None):
        if not timeout_sec > 0:
            raise ValueError("the task timeout must be positive")
        self._server = server
        self.timeout_sec = float(timeout_sec)
        self.interval_sec = interval_sec or min(60.0, max(0.5, self.timeout_sec / 5))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="localserver-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_sec):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watchdog must outlive one failed round
                log.exception("task watchdog round failed")

    def check(self) -> list[str]:
        """Fail the ``in_progress`` tasks silent for longer than the timeout; returns their ids."""
        cutoff = (datetime.now(timezone.utc) - timedelta(seconds=self.timeout_sec)).isoformat(timespec="microseconds")
        store = self._server.store
        with store.transaction():
            ctx = Context(store, ADMIN_ID, None, self._server)
            silent = store.select("tasks", "status = ? AND last_update < ?", ["in_progress", cutoff])
            for doc in silent:
                log.warning("task %s silent since %s: marking it failed", doc["id"], doc.get("last_update"))
                tasks_api.set_status(ctx, doc, "failed", force=True, reason=FORCED_STOP, message=FORCED_STOP)
        return [doc["id"] for doc in silent]

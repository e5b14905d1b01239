"""A mutex on the ClearML server, held by one process at a time wherever the processes run.

The lock is a hidden project (the registry's is `<project>/.promotion-lock`). Acquiring it is `projects.create`:
project names are unique on the server, so of two concurrent creates exactly one succeeds and the other fails
with "not unique" (400/801). The embedded server checks and inserts inside one transaction; a real ClearML
server refuses a duplicate name too, and the SDK itself relies on the second create failing
(`get_or_create_project` in clearml/backend_interface/util.py retries after exactly that race). Releasing is
`projects.delete` of the id the holder created, so a release never removes somebody else's lock.

A holder that dies keeps the lock until a waiter has seen the *same* lock id for `lease_s` seconds of its own
monotonic clock (no clock is compared across machines); the waiter then deletes that id, which only one waiter
can do, and all of them race for a new lock. `lease_s` must exceed the longest critical section (a promotion is
a handful of API calls, well under a second).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import time
from dataclasses import dataclass

from loop.api import APIError, client
from loop.errors import StageError

log = logging.getLogger(__name__)

NOT_UNIQUE = (400, 801)
INVALID_PROJECT = (400, 401)
LEASE_S = 60.0
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class LockState:
    id: str
    holder: str


class ServerLock:
    """`with ServerLock(name):` runs the block while holding the lock `name` (a project path)."""

    def __init__(
        self,
        name: str,
        *,
        lease_s: float = LEASE_S,
        timeout_s: float = TIMEOUT_S,
        poll_s: float = 0.1,
        purpose: str = "",
    ):
        self.name = name
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.holder = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "task": os.environ.get("CLEARML_TASK_ID", ""),
                "purpose": purpose,
            }
        )
        self.lock_id: str | None = None

    def __enter__(self) -> ServerLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        first_seen: dict[str, float] = {}
        while True:
            try:
                self.lock_id = (
                    client().projects.create(name=self.name, description=self.holder, system_tags=["hidden"]).id
                )
                return
            except APIError as error:
                if error.codes != NOT_UNIQUE:
                    raise
            current = self.state()
            now = time.monotonic()
            if current is not None:
                seen = first_seen.setdefault(current.id, now)
                if now - seen > self.lease_s:
                    log.warning(
                        "breaking lock %s (id %s) held longer than %.0f s by %s",
                        self.name,
                        current.id,
                        self.lease_s,
                        current.holder,
                    )
                    self._delete(current.id)
                    continue
                if now > deadline:
                    raise StageError(
                        f"lock {self.name} is held by {current.holder}; gave up after {self.timeout_s:.0f} s"
                    )
            time.sleep(self.poll_s * random.uniform(0.5, 1.5))

    def release(self) -> None:
        if self.lock_id is None:
            return
        if not self._delete(self.lock_id):
            log.warning(
                "lock %s (id %s) was broken by a waiter before this holder released it", self.name, self.lock_id
            )
        self.lock_id = None

    def held(self) -> bool:
        """Whether this object still holds the lock (a waiter breaks it only after the lease)."""
        current = self.state()
        return self.lock_id is not None and current is not None and current.id == self.lock_id

    def state(self) -> LockState | None:
        """The lock as the server has it now, or None when nobody holds it."""
        found = client().projects.get_all(
            name=f"^{re.escape(self.name)}$", search_hidden=True, only_fields=["id", "description"]
        )
        return LockState(found[0].id, found[0].description or "") if found else None

    def _delete(self, lock_id: str) -> bool:
        try:
            client().projects.delete(project=lock_id, force=True)
            return True
        except APIError as error:
            if error.codes == INVALID_PROJECT:
                return False  # already released or broken
            raise

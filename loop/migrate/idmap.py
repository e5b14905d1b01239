"""The migration's memory: which target object each source object became, kept in a SQLite file beside the
target's `clearml.conf`, so a second run adds nothing and an interrupted one resumes where it stopped.

Each row is written (and committed) as soon as the target object exists, with its state: `shell` for a task
whose copy has begun, `done` once it is complete. ClearML ids are 32 hexadecimal characters, unique across
kinds, so one table maps them all (and `translate` can replace each source id found inside a value).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
SHELL, DONE = "shell", "done"


class IdMap:
    def __init__(self, path: Path, source: str, target: str):
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ids (source_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
            "target_id TEXT NOT NULL, state TEXT NOT NULL, name TEXT NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS ends (role TEXT PRIMARY KEY, api TEXT NOT NULL)")
        self._check_ends(source, target)
        self._targets = dict(self._db.execute("SELECT source_id, target_id FROM ids"))
        self._states = dict(self._db.execute("SELECT source_id, state FROM ids"))

    def _check_ends(self, source: str, target: str) -> None:
        known = dict(self._db.execute("SELECT role, api FROM ends"))
        for role, api in (("source", source), ("target", target)):
            if known.setdefault(role, api) != api:
                raise ValueError(f"the id map {self.path} is of a migration with {role} {known[role]}, not {api}")
            self._db.execute("INSERT OR IGNORE INTO ends VALUES (?, ?)", (role, api))

    def close(self) -> None:
        self._db.close()

    def target(self, source_id: str) -> str | None:
        return self._targets.get(source_id)

    def state(self, source_id: str) -> str | None:
        return self._states.get(source_id)

    def record(self, kind: str, source_id: str, target_id: str, state: str, name: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO ids VALUES (?, ?, ?, ?, ?)", (source_id, kind, target_id, state, name))
        self._targets[source_id] = target_id
        self._states[source_id] = state

    @property
    def targets(self) -> dict[str, str]:
        """Source id -> target id, live (a `Translation` made from it sees later copies)."""
        return self._targets

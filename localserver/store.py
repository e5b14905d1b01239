"""SQLite storage: one JSON document per row plus indexed columns, and an event log.

All API calls run inside :meth:`Store.transaction`, which serialises them with one in-process lock and a
``BEGIN IMMEDIATE`` transaction, so read-modify-write sequences such as ``queues.get_next_task`` are atomic.
WAL mode with ``synchronous=NORMAL`` keeps every committed transaction across a ``kill -9`` of the server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

ENTITIES = ("projects", "tasks", "models", "queues", "workers")
INDEXED = ("name", "project", "status", "created", "last_update")

_SCHEMA = [
    *(
        f"CREATE TABLE IF NOT EXISTS {entity} (id TEXT PRIMARY KEY, name TEXT, project TEXT, status TEXT, "
        f"created TEXT, last_update TEXT, doc TEXT NOT NULL)"
        for entity in ENTITIES
    ),
    *(f"CREATE INDEX IF NOT EXISTS {entity}_project ON {entity}(project)" for entity in ENTITIES),
    *(f"CREATE INDEX IF NOT EXISTS {entity}_name ON {entity}(name)" for entity in ENTITIES),
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT NOT NULL, "
    "type TEXT NOT NULL, metric TEXT, variant TEXT, iter INTEGER, timestamp INTEGER, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_task_type ON events(task, type)",
    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Queue entries live in their own table so a pop is an indexed delete, not a rewrite of the queue document.
    "CREATE TABLE IF NOT EXISTS queue_entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, "
    "task TEXT NOT NULL, added TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS queue_entries_queue ON queue_entries(queue, seq)",
]


class Store:
    def __init__(self, db_path: Path):
        self._conn = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.RLock()
        self._depth = 0
        for statement in _SCHEMA:
            self._conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Run the block atomically; nested use joins the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    # documents
    def get(self, entity: str, doc_id: str) -> dict | None:
        row = self._conn.execute(f"SELECT doc FROM {entity} WHERE id = ?", (doc_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, entity: str, doc: dict) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO {entity} (id, {', '.join(INDEXED)}, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc["id"], *(_column(doc.get(col)) for col in INDEXED), json.dumps(doc)),
        )

    def delete(self, entity: str, doc_id: str) -> None:
        self._conn.execute(f"DELETE FROM {entity} WHERE id = ?", (doc_id,))

    def scan(self, entity: str, ids: Iterable[str] | None = None, projects: Iterable[str] | None = None) -> list[dict]:
        """All documents, narrowed by id and/or project through the indexes when given."""
        clauses, params = [], []
        for column, values in (("id", ids), ("project", projects)):
            if values is not None:
                values = list(values)
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(f"SELECT doc FROM {entity}{where} ORDER BY rowid", params).fetchall()
        return [json.loads(row[0]) for row in rows]

    def find_by_name(self, entity: str, name: str) -> list[dict]:
        rows = self._conn.execute(f"SELECT doc FROM {entity} WHERE name = ?", (name,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    # events
    def add_events(self, events: list[dict]) -> None:
        self._conn.executemany(
            "INSERT INTO events (task, type, metric, variant, iter, timestamp, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    ev["task"],
                    ev["type"],
                    ev.get("metric"),
                    ev.get("variant"),
                    ev.get("iter"),
                    ev.get("timestamp"),
                    json.dumps(ev),
                )
                for ev in events
            ],
        )

    def events(self, task_ids: list[str], types: list[str] | None = None) -> list[dict]:
        params: list = list(task_ids)
        where = f"task IN ({', '.join('?' * len(task_ids))})"
        if types:
            where += f" AND type IN ({', '.join('?' * len(types))})"
            params.extend(types)
        rows = self._conn.execute(f"SELECT doc FROM events WHERE {where} ORDER BY seq", params).fetchall()
        return [json.loads(row[0]) for row in rows]

    def delete_events(self, task_id: str) -> int:
        return self._conn.execute("DELETE FROM events WHERE task = ?", (task_id,)).rowcount

    # queue entries (FIFO by insertion order)
    def queue_entries(self, queue_id: str) -> list[dict]:
        rows = self._conn.execute(
            "SELECT task, added FROM queue_entries WHERE queue = ? ORDER BY seq", (queue_id,)
        ).fetchall()
        return [{"task": task, "added": added} for task, added in rows]

    def add_queue_entry(self, queue_id: str, task_id: str, added: str) -> None:
        self._conn.execute(
            "INSERT INTO queue_entries (queue, task, added) VALUES (?, ?, ?)", (queue_id, task_id, added)
        )

    def remove_queue_entry(self, queue_id: str, task_id: str) -> int:
        return self._conn.execute(
            "DELETE FROM queue_entries WHERE queue = ? AND task = ?", (queue_id, task_id)
        ).rowcount

    def pop_queue_entry(self, queue_id: str) -> dict | None:
        row = self._conn.execute(
            "SELECT seq, task, added FROM queue_entries WHERE queue = ? ORDER BY seq LIMIT 1", (queue_id,)
        ).fetchone()
        if row is None:
            return None
        self._conn.execute("DELETE FROM queue_entries WHERE seq = ?", (row[0],))
        return {"task": row[1], "added": row[2]}

    def delete_queue_entries(self, queue_id: str) -> None:
        self._conn.execute("DELETE FROM queue_entries WHERE queue = ?", (queue_id,))

    # settings
    def setting(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))


def _column(value):
    return value if isinstance(value, (str, int, float)) or value is None else json.dumps(value)

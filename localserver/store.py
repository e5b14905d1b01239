"""SQLite storage: one JSON document per row plus indexed query columns, an event log and queue entries.

Concurrency: writers run inside :meth:`Store.transaction` on the one write connection, serialised by an
in-process lock and a ``BEGIN IMMEDIATE`` transaction, so read-modify-write sequences such as
``queues.get_next_task`` are atomic. Readers run inside :meth:`Store.read` on the read connection, in a deferred
transaction (a consistent WAL snapshot); they never wait for the write lock, only for each other. One reader at
a time is deliberate: sqlite3 hands the GIL back at every step of a query, and several reading threads then
convoy on it (measured on 2 cores, `tasks.get_all` in-process: 1,269 calls/s from one thread, 298 from 16
threads sharing a pool of connections, 1,271 from 16 threads taking turns). Every store method must run inside
one of the two. WAL mode with ``synchronous=NORMAL`` keeps every committed transaction across a
``kill -9`` of the server. The schema is versioned by :mod:`localserver.migrations`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from . import migrations
from .jsoncodec import loads
from .migrations import JSON_COLUMNS, SCALAR_COLUMNS

COLUMNS = (*SCALAR_COLUMNS, *JSON_COLUMNS)
SCALAR = "training_stats_scalar"


class Store:
    def __init__(self, db_path: Path):
        self._path = str(db_path)
        self._writer = self._connect()
        migrations.migrate(self._writer)
        self._write_lock = threading.RLock()
        self._local = threading.local()  # .conn: the connection of the read or write scope this thread is in
        self._reader = self._connect()
        self._read_lock = threading.Lock()
        # Credential checks on every request: a point lookup on its own connection never waits behind a long read.
        self._checker = self._connect()
        self._check_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def close(self) -> None:
        with self._write_lock, self._read_lock, self._check_lock:
            self._checker.close()
            self._reader.close()
            self._writer.close()

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            raise RuntimeError("the store is used outside Store.read() or Store.transaction()")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Run the block atomically on the write connection; nested use joins the outer transaction."""
        if getattr(self._local, "conn", None) is self._writer:
            yield self
            return
        if getattr(self._local, "conn", None) is not None:
            raise RuntimeError("a write transaction cannot start inside Store.read()")
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            self._local.conn = self._writer
            try:
                yield self
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            else:
                self._writer.execute("COMMIT")
            finally:
                self._local.conn = None

    @contextmanager
    def read(self) -> Iterator[Store]:
        """Run the block on a consistent snapshot without the write lock; inside a transaction it joins it."""
        if getattr(self._local, "conn", None) is not None:
            yield self
            return
        with self._read_lock:
            self._reader.execute("BEGIN")
            self._local.conn = self._reader
            try:
                yield self
            finally:
                self._local.conn = None
                self._reader.execute("ROLLBACK")  # nothing to keep: ends the snapshot

    # documents
    def get(self, entity: str, doc_id: str) -> dict | None:
        row = self._conn.execute(f"SELECT doc FROM {entity} WHERE id = ?", (doc_id,)).fetchone()
        return loads(row[0]) if row else None

    def put(self, entity: str, doc: dict) -> None:
        values = [_scalar(doc.get(col)) for col in SCALAR_COLUMNS] + [_tags(doc.get(col)) for col in JSON_COLUMNS]
        self._conn.execute(
            f"INSERT OR REPLACE INTO {entity} (id, {', '.join(COLUMNS)}, doc) "
            f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})",
            (doc["id"], *values, json.dumps(doc)),
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
        return self.select(entity, " AND ".join(clauses), params)

    def select(
        self,
        entity: str,
        where: str = "",
        params: Sequence = (),
        order_by: str = "",
        limit: int | None = None,
        offset: int = 0,
        fields: Sequence[str] | None = None,
    ) -> list[dict]:
        """Documents matching a WHERE clause over the query columns (built by localserver.query). With ``fields``
        (plain top-level names), the documents may come back with only ``id`` and those of them they hold, taken
        out by SQLite instead of decoding whole documents in Python (a tenth of the decoding for a task list;
        none for ``fields=()``, the ids alone)."""
        rows = f"FROM {entity}"
        if where:
            rows += f" WHERE {where}"
        rows += f" ORDER BY {order_by + ', ' if order_by else ''}rowid"
        if limit is not None:
            rows += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        if fields is not None and not fields:
            return [{"id": row[0]} for row in self._conn.execute(f"SELECT id {rows}", list(params))]
        if fields:
            paths = ["$.id", *(f"$.{name}" for name in fields)]
            sql = f"SELECT doc, json_extract(doc, {', '.join('?' * len(paths))}) {rows}"
            try:
                return [_fields(row, ("id", *fields)) for row in self._conn.execute(sql, [*paths, *params])]
            except sqlite3.OperationalError:  # NaN (a diverged metric) is JSON to Python, malformed to SQLite
                pass
        return [loads(row[0]) for row in self._conn.execute(f"SELECT doc {rows}", list(params))]

    def column_rows(self, entity: str, columns: Sequence[str], where: str, params: Sequence, order_by: str) -> list:
        """``(rowid, *column values)`` of the matching rows, without decoding documents."""
        sql = f"SELECT rowid, {', '.join(columns)} FROM {entity}"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order_by + ', ' if order_by else ''}rowid"
        return self._conn.execute(sql, list(params)).fetchall()

    def by_rowids(self, entity: str, rowids: Sequence[int]) -> list[dict]:
        """Documents of ``rowids``, in that order."""
        docs: dict = {}
        for start in range(0, len(rowids), 500):
            chunk = list(rowids[start : start + 500])
            sql = f"SELECT rowid, doc FROM {entity} WHERE rowid IN ({', '.join('?' * len(chunk))})"
            docs.update(self._conn.execute(sql, chunk).fetchall())
        return [loads(docs[rowid]) for rowid in rowids if rowid in docs]

    def find_by_name(self, entity: str, name: str) -> list[dict]:
        return self.select(entity, "name = ?", [name])

    def distinct(self, entity: str, column: str, projects: Iterable[str] | None = None) -> list:
        if column not in COLUMNS:
            raise ValueError(f"{column} is not a query column")
        where, params = f"{column} IS NOT NULL", []
        if projects is not None:
            projects = list(projects)
            where += f" AND project IN ({', '.join('?' * len(projects))})"
            params = projects
        return [row[0] for row in self._conn.execute(f"SELECT DISTINCT {column} FROM {entity} WHERE {where}", params)]

    # events
    def add_events(self, events: list[dict]) -> None:
        self._conn.executemany(
            "INSERT INTO events (task, type, metric, variant, iter, timestamp, value, doc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    ev["task"],
                    ev["type"],
                    ev.get("metric"),
                    ev.get("variant"),
                    ev.get("iter"),
                    ev.get("timestamp"),
                    _number(ev.get("value")),
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
        return [loads(row[0]) for row in rows]

    def series_stats(
        self, task_id: str, event_type: str, metrics: dict[str, list[str]] | None = None, x: str = "iter"
    ) -> list[tuple]:
        """``(metric, variant, count, min x, max x)`` per series of a task, ``x`` being ``iter`` or ``timestamp``;
        ``metrics`` narrows to ``{metric: [variants]}`` (no variants: all of the metric's)."""
        x = _x_axis(x)
        where, params = _series_filter(task_id, event_type, metrics)
        return self._conn.execute(
            f"SELECT metric, variant, COUNT(*), MIN({x}), MAX({x}) FROM events "
            f"WHERE {where} GROUP BY metric, variant ORDER BY metric, variant",
            params,
        ).fetchall()

    def scalar_points(self, task_id: str, metric, variant, x: str, interval: int) -> list[tuple]:
        """``(x, value)`` of one scalar series by ``x`` (iter or timestamp), averaged per bucket of ``interval``
        (1: every point; a point reported twice for one x keeps the last). By iteration, both read the series
        index only."""
        x = _x_axis(x)
        base = "task = ? AND type = ? AND metric IS ? AND variant IS ?"
        params = [task_id, SCALAR, metric, variant]
        if interval <= 1:  # SQLite takes the bare column `value` from the row of MAX(seq)
            sql = f"SELECT {x}, value, MAX(seq) FROM events WHERE {base} GROUP BY {x} ORDER BY {x}"
        else:
            sql = (
                f"SELECT ({x} / {int(interval)}) * {int(interval)} AS bucket, AVG(value) FROM events "
                f"WHERE {base} GROUP BY bucket ORDER BY bucket"
            )
        return [row[:2] for row in self._conn.execute(sql, params)]

    def events_version(self, task_id: str, event_type: str) -> int | None:
        """The newest event's sequence number of a task and type: a new one whenever they change (events are
        appended with ever-increasing numbers, or deleted all at once with their task's)."""
        return self._conn.execute(
            "SELECT MAX(seq) FROM events WHERE task = ? AND type = ?", (task_id, event_type)
        ).fetchone()[0]

    def series_iterations(
        self, task_id: str, event_type: str, metric, variants: list[str], below: int | None, limit: int, desc: bool
    ) -> list[int]:
        """Up to ``limit`` distinct iterations of a metric (and variants), newest first when ``desc``, strictly
        before ``below`` (after it when ascending) when given."""
        where, params = _series_filter(task_id, event_type, {metric: variants})
        if below is not None:
            where += " AND iter < ?" if desc else " AND iter > ?"
            params.append(below)
        rows = self._conn.execute(
            f"SELECT DISTINCT iter FROM events WHERE {where} ORDER BY iter {'DESC' if desc else 'ASC'} LIMIT ?",
            [*params, int(limit)],
        ).fetchall()
        return [row[0] for row in rows]

    def iteration_events(self, task_id: str, event_type: str, metric, variants: list[str], iters: list[int]) -> list:
        """The events of the given iterations of a metric, the last reported per variant and iteration."""
        if not iters:
            return []
        where, params = _series_filter(task_id, event_type, {metric: variants})
        where += f" AND iter IN ({', '.join('?' * len(iters))})"
        rows = self._conn.execute(
            f"SELECT doc FROM events WHERE seq IN (SELECT MAX(seq) FROM events WHERE {where} "
            "GROUP BY variant, iter) ORDER BY iter, variant",
            [*params, *iters],
        ).fetchall()
        return [loads(row[0]) for row in rows]

    def delete_events(self, task_id: str) -> int:
        return self._conn.execute("DELETE FROM events WHERE task = ?", (task_id,)).rowcount

    # queue entries (FIFO by insertion order)
    def queue_entries(self, queue_id: str) -> list[dict]:
        rows = self._conn.execute(
            "SELECT task, added FROM queue_entries WHERE queue = ? ORDER BY seq", (queue_id,)
        ).fetchall()
        return [{"task": task, "added": added} for task, added in rows]

    def count_queue_entries(self, queue_id: str) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM queue_entries WHERE queue = ?", (queue_id,)).fetchone()[0]

    def add_queue_entry(self, queue_id: str, task_id: str, added: str) -> None:
        self._conn.execute(
            "INSERT INTO queue_entries (queue, task, added) VALUES (?, ?, ?)", (queue_id, task_id, added)
        )

    def remove_queue_entry(self, queue_id: str, task_id: str) -> int:
        return self._conn.execute(
            "DELETE FROM queue_entries WHERE queue = ? AND task = ?", (queue_id, task_id)
        ).rowcount

    def move_queue_entry(self, queue_id: str, index: int, position: int) -> None:
        """Move the entry at `index` of `queue_id`'s order to `position` (both in range): the entries in between
        shift by one; the rows keep their ``seq``s, which are the order, and take each other's task."""
        rows = self._conn.execute(
            "SELECT seq, task, added FROM queue_entries WHERE queue = ? ORDER BY seq", (queue_id,)
        ).fetchall()
        entries = [(task, added) for _, task, added in rows]
        entries.insert(position, entries.pop(index))
        changed = range(min(index, position), max(index, position) + 1)
        self._conn.executemany(
            "UPDATE queue_entries SET task = ?, added = ? WHERE seq = ?",
            [(*entries[slot], rows[slot][0]) for slot in changed],
        )

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

    # users and credentials (see migrations._v4_users)
    def users(self, include_removed: bool = False) -> list[dict]:
        where = "" if include_removed else "WHERE removed IS NULL"
        rows = self._conn.execute(f"SELECT {_USER_COLUMNS} FROM users {where} ORDER BY created, id").fetchall()
        return [dict(zip(_USER_FIELDS, row, strict=True)) for row in rows]

    def user(self, user_id: str) -> dict | None:
        row = self._conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
        return dict(zip(_USER_FIELDS, row, strict=True)) if row else None

    def active_user_named(self, name: str) -> dict | None:
        row = self._conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE name = ? COLLATE NOCASE AND removed IS NULL", (name,)
        ).fetchone()
        return dict(zip(_USER_FIELDS, row, strict=True)) if row else None

    def add_user(self, user: dict) -> None:
        self._conn.execute(
            f"INSERT INTO users ({_USER_COLUMNS}) VALUES ({', '.join('?' * len(_USER_FIELDS))})",
            [user.get(name) for name in _USER_FIELDS],
        )

    def set_user_password(self, user_id: str, password_hash: str) -> None:
        self._conn.execute(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1 WHERE id = ?",
            (password_hash, user_id),
        )

    def mark_user_removed(self, user_id: str, when: str) -> None:
        self._conn.execute(
            "UPDATE users SET removed = ?, password_hash = NULL, session_epoch = session_epoch + 1 WHERE id = ?",
            (when, user_id),
        )
        self._conn.execute("DELETE FROM credentials WHERE user = ?", (user_id,))

    def credentials_of(self, user_id: str) -> list[dict]:
        rows = self._conn.execute(
            f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE user = ? ORDER BY created", (user_id,)
        ).fetchall()
        return [dict(zip(_CREDENTIAL_FIELDS, row, strict=True)) for row in rows]

    def add_credential(self, credential: dict) -> None:
        self._conn.execute(
            f"INSERT INTO credentials ({_CREDENTIAL_COLUMNS}) VALUES ({', '.join('?' * len(_CREDENTIAL_FIELDS))})",
            [credential.get(name) for name in _CREDENTIAL_FIELDS],
        )

    def delete_credential(self, user_id: str, access_key: str) -> int:
        cursor = self._conn.execute("DELETE FROM credentials WHERE user = ? AND access_key = ?", (user_id, access_key))
        return cursor.rowcount

    def set_credential_label(self, user_id: str, access_key: str, label: str) -> int:
        cursor = self._conn.execute(
            "UPDATE credentials SET label = ? WHERE user = ? AND access_key = ?", (label, user_id, access_key)
        )
        return cursor.rowcount

    def credential_used(self, access_key: str, when: str, address: str) -> None:
        self._conn.execute(
            "UPDATE credentials SET last_used = ?, last_used_from = ? WHERE access_key = ?", (when, address, access_key)
        )

    # checks outside any scope, on their own connection (see __init__)
    def active_credential(self, access_key: str) -> tuple[str, str] | None:
        """``(user id, secret hash)`` of a key pair whose user is active, else ``None``."""
        with self._check_lock:
            return self._checker.execute(
                "SELECT c.user, c.secret_hash FROM credentials c JOIN users u ON u.id = c.user "
                "WHERE c.access_key = ? AND u.removed IS NULL",
                (access_key,),
            ).fetchone()

    def active_session_epoch(self, user_id: str) -> int | None:
        """The session epoch of an active user, else ``None``."""
        with self._check_lock:
            row = self._checker.execute(
                "SELECT session_epoch FROM users WHERE id = ? AND removed IS NULL", (user_id,)
            ).fetchone()
        return row[0] if row else None


_USER_FIELDS = ("id", "name", "role", "password_hash", "created", "removed", "session_epoch")
_USER_COLUMNS = ", ".join(_USER_FIELDS)
_CREDENTIAL_FIELDS = ("access_key", "secret_hash", "user", "label", "created", "last_used", "last_used_from")
_CREDENTIAL_COLUMNS = ", ".join(_CREDENTIAL_FIELDS)


def _fields(row: tuple, names: Sequence[str]) -> dict:
    """``names`` of a document from ``(doc, JSON array of their values)``: a null value may be a field the
    document lacks (json_extract cannot tell), so that document is decoded whole."""
    values = loads(row[1])
    if None in values:
        return loads(row[0])
    return dict(zip(names, values, strict=True))


def _x_axis(x: str) -> str:
    if x not in ("iter", "timestamp"):
        raise ValueError(f"unknown x axis {x}")
    return x


def _series_filter(task_id: str, event_type: str, metrics: dict[str, list[str]] | None) -> tuple[str, list]:
    where, params = "task = ? AND type = ?", [task_id, event_type]
    if metrics:
        alternatives = []
        for metric, variants in metrics.items():
            if variants:
                alternatives.append(f"(metric IS ? AND variant IN ({', '.join('?' * len(variants))}))")
                params.extend([metric, *variants])
            else:
                alternatives.append("metric IS ?")
                params.append(metric)
        where += f" AND ({' OR '.join(alternatives)})"
    return where, params


def _scalar(value):
    """A query column holds strings and numbers only: lists and objects never match a column filter."""
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None


def _tags(value) -> str:
    return json.dumps([v for v in value if isinstance(v, str)] if isinstance(value, list) else [])


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

"""Numbered schema migrations of the store, each applied once and recorded in ``schema_migrations``.

Version 1 is the schema written before migrations existed (entities as JSON documents with a few indexed
columns, the event log, queue entries and settings); a database without ``schema_migrations`` is at version 1
when its ``tasks`` table exists and empty otherwise. Each later migration runs in its own transaction together
with its record, so an interrupted upgrade leaves the database at the previous version. Never edit a released
migration: append a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone

# The administrator: who the server's own keys sign in as (the id every entity had before users existed).
ADMIN_ID = "local-user"
ADMIN_NAME = "admin"
ENTITIES = ("projects", "tasks", "models", "queues", "workers")

# Document fields copied into columns (filtered, sorted and paged in SQL by localserver.query).
SCALAR_COLUMNS = ("name", "project", "status", "type", "user", "parent", "created", "last_update")
JSON_COLUMNS = ("tags", "system_tags")  # JSON arrays, matched with json_each


def _v1_baseline(conn: sqlite3.Connection) -> None:
    for entity in ENTITIES:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {entity} (id TEXT PRIMARY KEY, name TEXT, project TEXT, status TEXT, "
            f"created TEXT, last_update TEXT, doc TEXT NOT NULL)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {entity}_project ON {entity}(project)")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {entity}_name ON {entity}(name)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT NOT NULL, "
        "type TEXT NOT NULL, metric TEXT, variant TEXT, iter INTEGER, timestamp INTEGER, doc TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS events_task_type ON events(task, type)")
    conn.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS queue_entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, "
        "task TEXT NOT NULL, added TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS queue_entries_queue ON queue_entries(queue, seq)")


def _v2_query_columns(conn: sqlite3.Connection) -> None:
    """Columns for every field get_all filters or sorts on, backfilled from the documents, and their indexes."""
    for entity in ENTITIES:
        for column in ("type", "user", "parent", *JSON_COLUMNS):
            conn.execute(f"ALTER TABLE {entity} ADD COLUMN {column} TEXT")
        scalars = ", ".join(
            f"{column} = CASE WHEN json_type(doc, '$.{column}') IN ('text', 'integer', 'real') "
            f"THEN json_extract(doc, '$.{column}') END"
            for column in ("type", "user", "parent")
        )
        arrays = ", ".join(
            f"{column} = CASE WHEN json_type(doc, '$.{column}') = 'array' "
            f"THEN json_extract(doc, '$.{column}') ELSE '[]' END"
            for column in JSON_COLUMNS
        )
        conn.execute(f"UPDATE {entity} SET {scalars}, {arrays}")
        for column in ("status", "type", "user", "parent", "created", "last_update"):
            conn.execute(f"CREATE INDEX {entity}_{column} ON {entity}({column})")
        conn.execute(f"CREATE INDEX {entity}_project_last_update ON {entity}(project, last_update)")


def _v3_event_series(conn: sqlite3.Connection) -> None:
    """Scalar values in a column and an index by series: histograms and debug-image paging read no documents."""
    conn.execute("ALTER TABLE events ADD COLUMN value REAL")
    conn.execute(
        "UPDATE events SET value = json_extract(doc, '$.value') WHERE json_type(doc, '$.value') IN ('integer', 'real')"
    )
    conn.execute("CREATE INDEX events_series ON events(task, type, metric, variant, iter, value)")


def _v4_users(conn: sqlite3.Connection) -> None:
    """Users (the administrator, who signs in with the server's keys, is the first) and their API key pairs.

    A removed user keeps their row, so what they created still shows their name; an active name is unique
    ignoring case. ``session_epoch`` grows on every password change and removal: web UI sessions of an older
    epoch end."""
    conn.execute(
        "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT, "
        "created TEXT NOT NULL, removed TEXT, session_epoch INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("CREATE UNIQUE INDEX users_active_name ON users(name COLLATE NOCASE) WHERE removed IS NULL")
    conn.execute(
        "CREATE TABLE credentials (access_key TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, "
        "user TEXT NOT NULL REFERENCES users(id), label TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, "
        "last_used TEXT, last_used_from TEXT)"
    )
    conn.execute("CREATE INDEX credentials_user ON credentials(user)")
    conn.execute(
        "INSERT INTO users (id, name, role, created) VALUES (?, ?, 'admin', ?)",
        (ADMIN_ID, ADMIN_NAME, datetime.now(timezone.utc).isoformat()),
    )


MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "baseline: documents, events, queue entries, settings", _v1_baseline),
    (2, "query columns type/user/parent/tags/system_tags and their indexes", _v2_query_columns),
    (3, "event values and an index by series", _v3_event_series),
    (4, "users and their credentials", _v4_users),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: sqlite3.Connection) -> int:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_migrations" in tables:
        return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
    return 1 if "tasks" in tables else 0


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database (a connection in autocommit mode) to :data:`LATEST`; returns the version found."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = current_version(conn)
        if found > LATEST:
            raise RuntimeError(f"database schema version {found} is newer than this server ({LATEST})")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied TEXT NOT NULL)"
        )
        if found == 1:  # written before migrations were recorded
            _record(conn, *MIGRATIONS[0][:2])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    for version, name, apply in MIGRATIONS:
        if version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current_version(conn) < version:  # another process may have applied it meanwhile
                apply(conn)
                _record(conn, version, name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def _record(conn: sqlite3.Connection, version: int, name: str) -> None:
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
        (version, name, datetime.now(timezone.utc).isoformat()),
    )

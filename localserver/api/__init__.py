"""Endpoint registry: ``@endpoint("tasks.get_by_id")`` functions take ``(ctx, body)`` and return the data dict."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import ApiError, missing_field
from ..store import Store

ENDPOINTS: dict[str, Callable[[Context, dict], dict]] = {}


@dataclass
class Context:
    store: Store
    user: str
    worker: str | None
    server: object  # the LocalServer


def call(server, name: str, body: dict, user: str, worker: str | None = None) -> dict:
    """Run endpoint ``name`` with ``body`` as ``user``: the one entry for the HTTP API and the web UI."""
    handler = ENDPOINTS.get(name)
    if handler is None:
        raise ApiError(400, 0, f"Unknown endpoint: {name}")
    ctx = Context(server.store, user, worker, server)
    with server.store.transaction():
        return handler(ctx, body)


def endpoint(*names: str):
    def register(func):
        for name in names:
            ENDPOINTS[name] = func
        return func

    return register


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def require(body: dict, name: str):
    value = body.get(name)
    if value is None or value == "":
        raise missing_field(name)
    return value


def id_list(value) -> list[str]:
    if value is None:
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]


def listed(docs: list[dict], body: dict, ids: list[str]) -> list[dict]:
    """What a `*.get_all` lists: documents with the `hidden` system tag only when asked for by id or with
    `search_hidden` (pipeline steps live in hidden projects)."""
    if body.get("search_hidden") or ids:
        return docs
    return [doc for doc in docs if "hidden" not in (doc.get("system_tags") or [])]


def load_services() -> None:
    """Import the service modules so their endpoints register themselves."""
    from . import events, misc, models, projects, queues, tasks, workers  # noqa: F401

"""Endpoint registry: ``@endpoint("tasks.get_by_id")`` functions take ``(ctx, body)`` and return the data dict.

Endpoints registered with ``read_only=True`` run on a snapshot (:meth:`Store.read`) without the write lock, so
lists, lookups and event queries never wait for writers; every other endpoint runs in one write transaction.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import ApiError, missing_field
from ..store import Store

ENDPOINTS: dict[str, Callable[[Context, dict], dict]] = {}
READ_ONLY: set[str] = set()


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
    with server.store.read() if name in READ_ONLY else server.store.transaction():
        return handler(ctx, body)


def endpoint(*names: str, read_only: bool = False):
    def register(func):
        for name in names:
            ENDPOINTS[name] = func
            if read_only:
                READ_ONLY.add(name)
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


class Encoded(dict):
    """A result that carries its JSON encoding (``json``): the HTTP envelope splices it instead of encoding the
    dict again. Cached results are shared between requests: never mutate one."""

    def __init__(self, data: dict, encoded: bytes):
        super().__init__(data)
        self.json = encoded


class ResultCache:
    """Encoded results of an expensive read, keyed by the request and a version of the data it reads (so an
    entry is never stale: new data means a new key); least recently used out first beyond ``max_bytes``. An
    entry counts 3 times its encoding (for the decoded copy) plus KEY_BYTES, so keys of up to KEY_BYTES can
    never add up to more (callers do not cache requests with bigger keys). Results above an eighth of
    ``max_bytes`` are not kept."""

    KEY_BYTES = 1024

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Encoded] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Encoded]) -> Encoded:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        result = compute()
        size = self._size_of(result)
        if size <= self.max_bytes // 8:
            with self._lock:
                if key not in self._entries:
                    self._entries[key] = result
                    self._size += size
                while self._size > self.max_bytes:
                    _, evicted = self._entries.popitem(last=False)
                    self._size -= self._size_of(evicted)
        return result

    def _size_of(self, result: Encoded) -> int:
        return 3 * len(result.json) + self.KEY_BYTES


def load_services() -> None:
    """Import the service modules so their endpoints register themselves."""
    from . import events, misc, models, projects, queues, tasks, users, workers  # noqa: F401

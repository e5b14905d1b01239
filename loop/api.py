"""The ClearML REST client (`APIClient`, the SDK's public wrapper of the server API), one per process and server.

Each `APIClient()` opens a new session and logs in again; the registry and the lock make several calls per
operation (and the app polls), so they share one client. A client is kept per API host and key, so a process
that is pointed at another server (the tests start theirs after import) gets a fresh one.
"""

from __future__ import annotations

import os
import threading

from clearml.backend_api.session.client import APIClient, APIError

__all__ = ["APIError", "client"]

_clients: dict[tuple[str | None, str | None], APIClient] = {}
_lock = threading.Lock()


def client() -> APIClient:
    key = (os.environ.get("CLEARML_API_HOST"), os.environ.get("CLEARML_API_ACCESS_KEY"))
    with _lock:
        if key not in _clients:
            _clients[key] = APIClient()
        return _clients[key]

"""Serving the web UI for tests and scripts.

Until the Starlette HTTP app serves the UI on the API's own port, the UI runs on its own uvicorn server in a
thread, over a :class:`localserver.LocalServer` opened on the same data dir as the API server the SDK talks to
(SQLite in WAL mode is shared safely between the two processes). ``ui_base_url`` is the one place that knows
where the UI is; SDK-printed links are mapped onto it by :func:`on_ui`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from localserver import LocalServer, api
from localserver.auth import USER_ID
from localserver.webui import routes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_ui(data_dir):
    """``(base_url, server)``: the UI over the store in ``data_dir``, served until the block ends."""
    server = LocalServer(data_dir)
    port = free_port()
    config = uvicorn.Config(Starlette(routes=routes(server)), host="127.0.0.1", port=port, log_level="warning")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="webui", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web UI did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        uvicorn_server.should_exit = True
        thread.join(10)
        server.close()


@dataclass(frozen=True)
class LiveUI:
    base_url: str
    access_key: str
    secret_key: str


def on_ui(link: str, ui_base_url: str) -> str:
    """An SDK-printed link (host = the API's web_server) on the UI's address; the path is kept as printed."""
    parts = urlsplit(link)
    return f"{ui_base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class UIClient:
    """A TestClient over the UI of a fresh LocalServer, with ``call`` for API calls as the SDK would make."""

    def __init__(self, server: LocalServer):
        self.server = server
        self.http = TestClient(Starlette(routes=routes(server)), follow_redirects=False)

    def call(self, name: str, body: dict) -> dict:
        return api.call(self.server, name, body, USER_ID)

    def sign_in(self) -> str:
        """Signs in; returns the session's CSRF token."""
        keys = {"access_key": self.server.access_key, "secret_key": self.server.secret_key}
        response = self.http.post("/login", data=keys)
        assert response.status_code == 303, response.text
        return self.csrf()

    def csrf(self) -> str:
        return CSRF.search(self.http.get("/projects").text).group(1)

"""Web UI test helpers: :class:`LiveUI` (the session server's UI, for the browser) and :class:`UIClient` (an
in-process TestClient over a fresh :class:`localserver.LocalServer`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.testclient import TestClient

from localserver import LocalServer, api
from localserver.users import ADMIN_ID
from localserver.webui import routes
from loop import webpage


@dataclass(frozen=True)
class LiveUI:
    base_url: str
    access_key: str
    secret_key: str


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class UIClient:
    """A TestClient over the UI of a fresh LocalServer, with ``call`` for API calls as the SDK would make."""

    def __init__(self, server: LocalServer, extensions=(webpage.extension,)):
        """By default with the loop's page, as the dev stack serves it (`loop.webpage`)."""
        self.server = server
        self.http = TestClient(Starlette(routes=routes(server, extensions)), follow_redirects=False)

    def call(self, name: str, body: dict, user: str = ADMIN_ID) -> dict:
        return api.call(self.server, name, body, user)

    def sign_in(self) -> str:
        """Signs in; returns the session's CSRF token."""
        keys = {"access_key": self.server.access_key, "secret_key": self.server.secret_key}
        response = self.http.post("/login", data=keys)
        assert response.status_code == 303, response.text
        return self.csrf()

    def sign_in_as(self, name: str, password: str) -> str:
        """Signs in with a user name and password; returns the session's CSRF token."""
        response = self.http.post("/login", data={"name": name, "password": password})
        assert response.status_code == 303, response.text
        return self.csrf()

    def csrf(self) -> str:
        return CSRF.search(self.http.get("/projects").text).group(1)

"""Web UI fixtures: an in-process app over a fresh store (fast tests), and the UI over the session's server."""

from __future__ import annotations

import pytest
from webui_testing import LiveUI, UIClient, serve_ui

from localserver import LocalServer


@pytest.fixture
def ui(tmp_path):
    server = LocalServer(tmp_path / "server")
    client = UIClient(server)
    yield client
    client.http.close()
    server.close()


@pytest.fixture(scope="session")
def live_ui(clearml_server):
    """The UI over the session server's data (base_url, access_key, secret_key). Once the server's HTTP app
    serves the UI on the API's port, this is ``LiveUI(clearml_server.web_url, ...)`` (and ``on_ui`` a no-op)."""
    with serve_ui(clearml_server.data_dir) as (base_url, server):
        yield LiveUI(base_url, server.access_key, server.secret_key)

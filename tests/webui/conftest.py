"""Web UI fixtures: an in-process app over a fresh store (fast tests), and the UI over the session's server."""

from __future__ import annotations

import pytest
from webui_testing import LiveUI, UIClient

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
    """The UI of the session's server: on the API's own port, where the SDK's printed links point."""
    return LiveUI(clearml_server.web_url, clearml_server.access_key, clearml_server.secret_key)

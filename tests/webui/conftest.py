"""Web UI fixtures: an in-process app over a fresh store (fast tests), and the UI over the session's server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from webui_testing import UIClient, serve_ui  # noqa: E402

from localserver import LocalServer  # noqa: E402


@pytest.fixture
def ui(tmp_path):
    server = LocalServer(tmp_path / "server")
    client = UIClient(server)
    yield client
    client.http.close()
    server.close()


@pytest.fixture(scope="session")
def live_ui(clearml_server):
    """``(ui_base_url, server)``: the UI over the session server's data. When the HTTP app serves the UI on the
    API's port, this becomes ``clearml_server.web_url`` (and ``on_ui`` the identity)."""
    with serve_ui(clearml_server.data_dir) as (base_url, server):
        yield base_url, server

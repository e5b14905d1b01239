"""Fixtures of the localserver tests that run the API in this process (no HTTP, no SDK)."""

from __future__ import annotations

import pytest

from localserver.server import LocalServer


@pytest.fixture
def server(tmp_path):
    """A server on a fresh data dir, called through ``localserver.api.call`` (``server_testing.direct``)."""
    server = LocalServer(tmp_path / "data")
    yield server
    server.close()

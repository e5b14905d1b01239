"""Raw HTTP helpers for the localserver tests (no SDK: exact status codes and envelopes)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from dataclasses import dataclass

import pytest
import requests

from localserver import api, start_server_process
from localserver.errors import ApiError
from localserver.limits import Limits


def direct(server, endpoint: str, worker: str | None = None, **body) -> dict:
    """Run ``endpoint`` in this process as the local user (the ``server`` fixture of conftest.py)."""
    return api.call(server, endpoint, body, "local-user", worker=worker)


def assert_shape_error(server, endpoint: str, body: dict, message: str) -> None:
    """The body is refused at the endpoint's edge: 400/12 naming the field in ``message``."""
    with pytest.raises(ApiError) as refused:
        api.call(server, endpoint, body, "local-user")
    assert (refused.value.code, refused.value.subcode) == (400, 12)
    assert refused.value.msg.startswith("Validation error: ") and message in refused.value.msg


def login(server, expiration_sec: int | None = None) -> str:
    params = {"expiration_sec": expiration_sec} if expiration_sec else None
    response = requests.get(
        f"{server.api_url}/auth.login", auth=(server.access_key, server.secret_key), params=params, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["token"]


def call(server, endpoint: str, token: str | None, version: str | None = "2.23", **body) -> requests.Response:
    """POST ``endpoint`` with a JSON body; ``token=None`` sends no Authorization header."""
    prefix = f"/v{version}" if version else ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{server.api_url}{prefix}/{endpoint}", json=body, headers=headers, timeout=30)


def ok(server, endpoint: str, token: str, **body) -> dict:
    response = call(server, endpoint, token, **body)
    assert response.status_code == 200, f"{endpoint}: {response.status_code} {response.text}"
    return response.json()["data"]


@contextlib.contextmanager
def own_server(data_dir, access_key: str | None = None, secret_key: str | None = None, **limits):
    """A server subprocess of its own (``limits``: :class:`localserver.limits.Limits` fields), stopped after."""
    server = start_server_process(data_dir, 0, access_key, secret_key, limits=Limits(**limits) if limits else None)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after the response

    def json(self):
        return json.loads(self.body)


def read_response(sock: socket.socket, timeout: float = 5) -> RawResponse:
    sock.settimeout(timeout)
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    headers = {key.lower(): value for key, value in response.getheaders()}
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    return RawResponse(response.status, headers, body, closed)


def raw_exchange(server, data: bytes, timeout: float = 5) -> RawResponse:
    """Send ``data`` byte for byte on a new connection and read the one response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(sock, timeout)


def request_bytes(method: str, path: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

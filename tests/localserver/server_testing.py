"""Raw HTTP helpers for the localserver tests (no SDK: exact status codes and envelopes)."""

from __future__ import annotations

import requests


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

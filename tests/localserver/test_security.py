"""Tokens, login throttling, secrets and file modes: what protects the keys and the data dir."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import jwt
import pytest
import requests
from clearml.backend_api.utils import get_http_session_with_retry
from server_testing import call, login, own_server

from localserver import EmbeddedServer
from localserver.auth import MAX_EXPIRATION_SEC
from localserver.limits import Limits


def _login(server, **params) -> requests.Response:
    return requests.get(
        f"{server.api_url}/auth.login", auth=(server.access_key, server.secret_key), params=params, timeout=5
    )


def test_token_lifetime_is_clamped_and_must_be_a_positive_number(clearml_server):
    for requested in ("1e308", str(10 * MAX_EXPIRATION_SEC)):
        response = _login(clearml_server, expiration_sec=requested)
        assert response.status_code == 200
        claims = jwt.decode(response.json()["data"]["token"], options={"verify_signature": False})
        assert claims["exp"] <= time.time() + MAX_EXPIRATION_SEC + 5
    for bad in ("inf", "-inf", "nan", "abc", "-1", "0", "true"):
        response = _login(clearml_server, expiration_sec=bad)
        assert response.status_code == 400 and response.json()["data"] == {}, bad
        assert "expiration_sec" in response.json()["meta"]["result_msg"]
    in_body = requests.post(
        f"{clearml_server.api_url}/auth.login",
        json={"expiration_sec": 1e308},
        auth=(clearml_server.access_key, clearml_server.secret_key),
        timeout=5,
    )
    claims = jwt.decode(in_body.json()["data"]["token"], options={"verify_signature": False})
    assert claims["exp"] <= time.time() + MAX_EXPIRATION_SEC + 5


@pytest.mark.slow
def test_new_keys_revoke_old_tokens(tmp_path):
    data_dir = tmp_path / "data"
    with own_server(data_dir, "KEY1", "secret-one") as first:
        old_token = login(first)
    with own_server(data_dir, "KEY1", "secret-one") as same_keys:
        assert call(same_keys, "tasks.get_all", old_token).status_code == 200  # a restart alone keeps tokens
    with own_server(data_dir, "KEY2", "secret-two") as rotated:
        refused = call(rotated, "tasks.get_all", old_token)
        assert refused.status_code == 401 and refused.json()["meta"]["result_subcode"] == 30
        assert call(rotated, "tasks.get_all", login(rotated)).status_code == 200
    with own_server(data_dir, "KEY1", "secret-one") as back:  # back to the first keys: still revoked
        assert call(back, "tasks.get_all", old_token).status_code == 401


@pytest.mark.slow
def test_failed_logins_are_throttled_per_address(tmp_path):
    with own_server(tmp_path / "data", login_failures_per_minute=20) as server:  # one more every 3 s
        url = f"{server.api_url}/auth.login"
        for _ in range(30):  # no credentials at all: not a guess, not counted
            assert requests.get(url, timeout=5).status_code == 401
        statuses = []
        while len(statuses) < 100 and 429 not in statuses:
            statuses.append(requests.get(url, auth=(server.access_key, "guess"), timeout=5).status_code)
        assert statuses[:20] == [401] * 20 and statuses[-1] == 429
        throttled = requests.get(url, auth=(server.access_key, server.secret_key), timeout=5)  # not even checked
        assert throttled.status_code == 429 and throttled.json()["data"] == {}
        assert 1 <= int(throttled.headers["Retry-After"]) <= 3
        # The SDK's own HTTP session (429 is in its retry list) waits for Retry-After and gets its token.
        session = get_http_session_with_retry(total=4, status=4, status_forcelist=[429], backoff_factor=0.1)
        assert session.get(url, auth=(server.access_key, server.secret_key), timeout=10).status_code == 200
        assert requests.get(url, auth=(server.access_key, server.secret_key), timeout=5).status_code == 200


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_dir_database_ready_file_and_client_config_are_private(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)  # as an older version left it
    (data_dir / "localserver.sqlite").touch(mode=0o644)
    with own_server(data_dir) as server:
        assert call(server, "tasks.get_all", login(server)).status_code == 200
        assert _mode(data_dir) == 0o700
        for name in ("localserver.sqlite", "localserver.sqlite-wal", "localserver.sqlite-shm", "server-ready.json"):
            assert _mode(data_dir / name) == 0o600, name
        assert _mode(server.write_client_config(tmp_path / "clearml.conf")) == 0o600
    with EmbeddedServer(tmp_path / "embedded", limits=Limits(header_timeout=5)) as embedded:
        assert _mode(embedded.data_dir) == 0o700 and _mode(embedded.data_dir / "localserver.sqlite") == 0o600
        assert _mode(embedded.client_env()["CLEARML_CONFIG_FILE"]) == 0o600


def _config(tmp_path, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "localserver", "config", "--data-dir", str(tmp_path / "data"), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARML_API_")}
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60)


def test_the_secret_comes_from_a_file_and_argv_is_warned_about(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    from_file = _config(tmp_path, "--access-key", "K", "--secret-key-file", str(secret_file))
    assert "CLEARML_API_SECRET_KEY=from-a-file" in from_file.stdout and not from_file.stderr
    on_argv = _config(tmp_path, "--access-key", "K", "--secret-key", "on-argv")
    assert "CLEARML_API_SECRET_KEY=on-argv" in on_argv.stdout and "warning: --secret-key" in on_argv.stderr

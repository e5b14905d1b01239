"""The Python and command-line entry points: EmbeddedServer, client configuration, ``config`` exports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from server_testing import login, ok

from localserver import EmbeddedServer, Limits


def test_embedded_server_in_a_thread_with_client_configuration(tmp_path):
    with EmbeddedServer(tmp_path / "data", access_key="key-1", secret_key="secret-1") as server:
        env = server.client_env()
        assert env["CLEARML_API_HOST"] == server.api_url and env["CLEARML_FILES_HOST"] == server.files_url
        assert env["CLEARML_WEB_HOST"] == server.web_url
        assert (env["CLEARML_API_ACCESS_KEY"], env["CLEARML_API_SECRET_KEY"]) == ("key-1", "secret-1")
        conf = Path(env["CLEARML_CONFIG_FILE"]).read_text()
        assert "wait_on_maintenance_forever: false" in conf and "total: 4" in conf and server.api_url in conf
        token = login(server)
        assert [q["name"] for q in ok(server, "queues.get_all", token)["queues"]] == ["default"]
    try:
        requests.get(f"{server.api_url}/auth.login", timeout=1)
        raise AssertionError("the server still answers after stop()")
    except requests.ConnectionError:
        pass


def test_config_command_prints_the_stored_keys(tmp_path):
    with EmbeddedServer(tmp_path / "data") as server:
        keys = (server.access_key, server.secret_key)
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "localserver",
            "config",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            "9999",
            "--write",
            str(tmp_path / "clearml.conf"),
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("CLEARML_API_")},  # env keys would win
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in output.splitlines())
    assert exports["CLEARML_API_HOST"] == "http://127.0.0.1:9999"
    assert exports["CLEARML_FILES_HOST"] == "http://127.0.0.1:9999/files"
    assert (exports["CLEARML_API_ACCESS_KEY"], exports["CLEARML_API_SECRET_KEY"].strip("'")) == keys
    assert "http://127.0.0.1:9999/files" in (tmp_path / "clearml.conf").read_text()


def test_serve_refuses_limits_that_are_not_positive_numbers(tmp_path):
    # Subprocesses: an in-process SystemExit would be recorded by the SDK's exit hooks and fail later tasks.
    for option, value in (("--max-connections", "0"), ("--header-timeout", "nan")):
        command = [sys.executable, "-m", "localserver", "serve", "--data-dir", str(tmp_path / "data"), option, value]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and f"argument {option}: must be a positive number" in refused.stderr
    with pytest.raises(ValueError, match="--max-upload-mb must be a positive number"):
        Limits(max_upload_mb=0)
    assert not (tmp_path / "data").exists()

"""The migration's parts on their own: id and URL translation, the id map, reading a clearml.conf, and how a
server end retries (against a real HTTP server on 127.0.0.1 that fails on purpose)."""

from __future__ import annotations

import http.server
import json
import threading
import uuid

import pytest

from loop.errors import StageError
from loop.migrate.idmap import DONE, SHELL, IdMap
from loop.migrate.server import Endpoint, Server, ServerError
from loop.migrate.translate import Translation


def new_id() -> str:
    return uuid.uuid4().hex


def test_ids_anywhere_in_a_value_become_the_copies_ids():
    task, model, unknown = new_id(), new_id(), new_id()
    copy_task, copy_model = new_id(), new_id()
    translate = Translation({task: copy_task, model: copy_model}, {})
    value = {
        "parent": task,
        task: [f"step {task} made {model}", {"compared_with": model}],
        "unknown": unknown,
        "sha256": task + model,  # 64 hex characters: a file hash, not two ids
        "count": 3,
    }
    assert translate.value(value) == {
        "parent": copy_task,
        copy_task: [f"step {copy_task} made {copy_model}", {"compared_with": copy_model}],
        "unknown": unknown,
        "sha256": task + model,
        "count": 3,
    }


def test_urls_of_the_source_servers_become_the_targets_longest_prefix_first():
    translate = Translation(
        {},
        {
            "http://old:8008": "https://api.example",
            "http://old:8008/files": "https://files.example",
            "http://old:8080": "https://app.example",
        },
    )
    assert translate.text("http://old:8008/files/p/t.1/model.pt") == "https://files.example/p/t.1/model.pt"
    assert translate.text("see http://old:8080/projects/x and http://old:8008/v2.23/x") == (
        "see https://app.example/projects/x and https://api.example/v2.23/x"
    )
    assert translate.text("http://elsewhere:8008/files/a") == "http://elsewhere:8008/files/a"


def test_file_content_is_translated_only_when_it_is_text():
    task, copy = new_id(), new_id()
    translate = Translation({task: copy}, {})
    assert translate.content(json.dumps({"id": task}).encode()) == json.dumps({"id": copy}).encode()
    binary = b"\xff\xfe" + task.encode()
    assert translate.content(binary) == binary


def test_the_id_map_survives_a_reopen_and_belongs_to_one_pair_of_servers(tmp_path):
    path = tmp_path / "ids.sqlite"
    ids = IdMap(path, "http://source", "http://target")
    ids.record("tasks", "a" * 32, "b" * 32, SHELL, "train")
    ids.record("tasks", "a" * 32, "b" * 32, DONE, "train")
    ids.record("models", "c" * 32, "d" * 32, SHELL, "m")
    ids.close()
    again = IdMap(path, "http://source", "http://target")
    assert again.targets == {"a" * 32: "b" * 32, "c" * 32: "d" * 32}
    assert again.state("a" * 32) == DONE and again.state("c" * 32) == SHELL
    again.close()
    with pytest.raises(ValueError, match="is of a migration with target http://target, not http://other"):
        IdMap(path, "http://source", "http://other")


def test_a_configuration_that_cannot_be_used_is_refused_with_the_reason(tmp_path):
    with pytest.raises(StageError, match="no ClearML configuration at"):
        Endpoint.from_config(tmp_path / "missing.conf")
    broken = tmp_path / "broken.conf"
    broken.write_text("api { api_server: ")
    with pytest.raises(StageError, match="is not a readable clearml.conf"):
        Endpoint.from_config(broken)
    partial = tmp_path / "partial.conf"
    partial.write_text('api { api_server: "http://127.0.0.1:1" }')
    with pytest.raises(StageError, match="does not set api.files, api.access_key, api.secret_key"):
        Endpoint.from_config(partial)


class FlakyServer(http.server.ThreadingHTTPServer):
    """Answers `failures` requests with HTTP 503 (or `status`), then like a ClearML server: a token, then data."""

    def __init__(self, failures: int, status: int = 503):
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.failures, self.status, self.seen = failures, status, []


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    server: FlakyServer

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(self.path)
        if self.server.failures:
            self.server.failures -= 1
            code, body = self.server.status, {"meta": {"result_code": self.server.status, "result_msg": "busy"}}
        else:
            data = {"token": "t"} if "auth.login" in self.path else {"echo": self.path}
            code, body = 200, {"meta": {"result_code": 200, "result_subcode": 0, "result_msg": "OK"}, "data": data}
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky():
    servers = []

    def start(failures: int, status: int = 503) -> tuple[FlakyServer, Server]:
        server = FlakyServer(failures, status)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        endpoint = Endpoint(config=None, api=url, files=f"{url}/files", web=url, access_key="k", secret_key="s")
        return server, Server(endpoint, attempts=4, backoff_s=0.01)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_transient_failure_is_retried_with_backoff(flaky):
    server, end = flaky(failures=3)
    assert end.call("tasks.get_all") == {"echo": "/v2.23/tasks.get_all"}
    assert server.seen.count("/auth.login") == 4  # three 503s, then the token


def test_a_failure_that_outlasts_the_attempts_names_the_call(flaky):
    server, end = flaky(failures=100)
    with pytest.raises(ServerError, match=r"auth.login at http://127.0.0.1:\d+ failed 4 times, last: HTTP 503"):
        end.call("tasks.get_all")
    assert len(server.seen) == 4


def test_a_permanent_failure_is_not_retried(flaky):
    server, end = flaky(failures=1, status=400)
    with pytest.raises(ServerError, match=r"auth.login: busy \(400/0\)"):
        end.call("tasks.get_all")
    assert len(server.seen) == 1

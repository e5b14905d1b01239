"""Hostile and broken clients against a real server process: what an HTTP request may cost, and that every
request still gets an answer (the envelope, or the fileserver's JSON error) rather than a dropped socket."""

from __future__ import annotations

import contextlib
import select
import socket
import sqlite3
import time

import pytest
import requests
from server_testing import (
    bearer,
    login,
    own_server,
    peak_rss_mb,
    raw_exchange,
    read_response,
    request_bytes,
)
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from localserver import EmbeddedServer


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_every_response_closes_the_connection(clearml_server):
    token = login(clearml_server)
    for request in (
        request_bytes("GET", "/v2.23/projects.get_all", bearer(token)),
        request_bytes("GET", "/projects.get_all"),  # 401
        request_bytes("GET", "/files/no/such/file", bearer(token)),  # the fileserver's 404
        request_bytes("GET", "/no-such-page", bearer(token)),  # the catch-all's 400
    ):
        response = raw_exchange(clearml_server, request)  # HTTP/1.1 without "Connection: close" from the client
        assert response.headers["connection"] == "close" and response.closed, request


def test_unauthenticated_bodies_are_not_read(tmp_path):
    with own_server(tmp_path / "data") as server:
        # Huge declared bodies: answered 401 at once from the headers, and the connection is closed.
        sockets = [_connect(server) for _ in range(4)]
        for sock in sockets:
            headers = {"Content-Length": str(500 * 1024 * 1024), "Content-Type": "application/json"}
            sock.sendall(request_bytes("POST", "/tasks.get_all", headers) + b'{"a": 1')
        for sock in sockets:
            response = read_response(sock, timeout=5)
            assert response.status == 401 and response.json()["data"] == {} and response.closed
            sock.close()

        # A 600 MB chunked body: the server answers without reading it, so its memory does not grow.
        baseline = peak_rss_mb(server.pid)
        sent_mb = 0
        chunk = b"%x\r\n" % (1024 * 1024) + b"x" * (1024 * 1024) + b"\r\n"
        with _connect(server) as sock:
            sock.sendall(request_bytes("POST", "/v2.23/events.add_batch", {"Transfer-Encoding": "chunked"}))
            with contextlib.suppress(OSError):  # the server closes the connection after its 401
                while sent_mb < 600:
                    sock.sendall(chunk)
                    sent_mb += 1
        assert sent_mb < 600, "the server kept reading an unauthenticated body"
        assert peak_rss_mb(server.pid) - baseline < 50
        assert requests.get(f"{server.api_url}/auth.login", auth=(server.access_key, server.secret_key), timeout=5).ok


def test_malformed_framing_is_answered_400_with_the_envelope(clearml_server):
    token = login(clearml_server)
    for request in (
        request_bytes("POST", "/tasks.get_all", {**bearer(token), "Transfer-Encoding": "chunked"}, b"-1\r\nabc"),
        request_bytes("POST", "/tasks.get_all", {**bearer(token), "Content-Length": "abc"}, b"{}"),
        request_bytes("POST", "/tasks.get_all", {**bearer(token), "Content-Length": "-5"}, b"{}"),
        b"NOT AN HTTP REQUEST\r\n\r\n",
    ):
        response = raw_exchange(clearml_server, request)
        assert response.status == 400 and response.closed, request
        assert response.json()["meta"]["result_code"] == 400 and response.json()["data"] == {}


def test_idle_connections_do_not_block_a_normal_call(tmp_path):
    idle = []
    with own_server(tmp_path / "data") as server:  # default limits: 1,000 connections, 10 s for headers
        try:
            for index in range(1030):
                sock = _connect(server)
                if index % 10 == 0:
                    sock.sendall(b"GET /tasks.get_all HTTP/1.1\r\nHost: x\r\n")  # headers never finished
                idle.append(sock)
            token = login(server)
            # Within a few seconds, not after the 10 s header timeout has cleared the idle connections.
            response = requests.get(f"{server.api_url}/tasks.get_all", headers=bearer(token), timeout=5)
            assert response.status_code == 200
            # The connection cap made room by closing the oldest idle connections (readable: at their end).
            poller = select.poll()
            for sock in idle:
                poller.register(sock, select.POLLIN)
            assert len(poller.poll(0)) >= 30
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.slow
def test_slow_headers_and_stalled_bodies_time_out(tmp_path):
    with own_server(tmp_path / "data", header_timeout=1, body_timeout=1) as server:
        token = login(server)
        with _connect(server) as silent, _connect(server) as slow:
            slow.sendall(b"GET /tasks.get_all HTTP/1.1\r\n")
            started = time.monotonic()
            silent.settimeout(5)
            slow.settimeout(5)
            assert _closed_by_server(silent) and _closed_by_server(slow)
            assert time.monotonic() - started < 4
        with _connect(server) as stalled:
            headers = {**bearer(token), "Content-Length": "100"}
            stalled.sendall(request_bytes("POST", "/tasks.get_all", headers, b'{"name": '))
            response = read_response(stalled, timeout=5)
            assert response.status == 408 and response.json()["data"] == {}


def test_json_bodies_above_the_limit_are_refused(tmp_path):
    with own_server(tmp_path / "data", max_json_body_mb=1) as server:
        token = login(server)
        big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        headers_only = request_bytes("POST", "/tasks.get_all", {**bearer(token), "Content-Length": str(len(big))})
        declared = raw_exchange(server, headers_only)  # refused from the declared length, before any byte
        assert declared.status == 413 and declared.json()["meta"]["result_code"] == 413
        with _connect(server) as sock:  # chunked: counted while it streams
            sock.sendall(request_bytes("POST", "/tasks.get_all", {**bearer(token), "Transfer-Encoding": "chunked"}))
            for start in range(0, len(big), 256 * 1024):
                part = big[start : start + 256 * 1024]
                with contextlib.suppress(OSError):
                    sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            assert read_response(sock).status == 413
        small = requests.post(
            f"{server.api_url}/tasks.get_all", json={"id": ["x" * 1000]}, headers=bearer(token), timeout=5
        )
        assert small.status_code == 200


def test_internal_errors_are_logged_and_answered_without_details(tmp_path):
    with own_server(tmp_path / "data") as server:
        token = login(server)
        with sqlite3.connect(server.data_dir / "localserver.sqlite") as database:  # a damaged database
            database.execute("DROP TABLE tasks")
        response = requests.post(f"{server.api_url}/tasks.get_all", json={}, headers=bearer(token), timeout=5)
        assert response.status_code == 500 and response.json()["data"] == {}
        msg = response.json()["meta"]["result_msg"]
        assert "tasks" not in msg and "sqlite" not in msg.lower() and str(server.data_dir) not in response.text
        error_id = response.json()["meta"]["id"]
        assert error_id in msg
        log = (server.data_dir / "server.log").read_text()
        assert error_id in log and "no such table: tasks" in log and "Traceback" in log

        # The fileserver too: a full disk or a broken temp folder is logged, not shown.
        temp_folder = server.data_dir / "uploads-tmp"
        temp_folder.rmdir()
        temp_folder.write_text("not a folder")
        upload = requests.post(
            server.files_url,
            files={"broken/x.txt": ("broken/x.txt", b"data")},
            headers=bearer(token),
            timeout=5,
        )
        assert upload.status_code == 500 and str(server.data_dir) not in upload.text
        assert "Errno" not in upload.text and "id " in upload.json()["error"]


def test_extra_routes_come_after_the_api_and_before_the_catch_all(tmp_path):
    def ui_routes(server):  # built once the server's store and auth exist, as the web UI's are
        return [Route("/ui/hello", lambda request: PlainTextResponse(f"hello {server.access_key}"))]

    with EmbeddedServer(tmp_path / "data", access_key="KEY", secret_key="secret", extra_routes=ui_routes) as server:
        page = requests.get(f"{server.api_url}/ui/hello", timeout=5)
        assert page.text == "hello KEY" and page.headers["Connection"] == "close"
        assert requests.get(f"{server.api_url}/tasks.get_all", timeout=5).json()["meta"]["result_code"] == 401
        other = requests.get(f"{server.api_url}/elsewhere", timeout=5)
        assert other.status_code == 401 and other.json()["data"] == {}

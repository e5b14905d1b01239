"""Fileserver under /files: upload/download/HEAD/DELETE, auth, path escapes, and streaming of large files."""

from __future__ import annotations

import http.client
import os
import socket
import uuid

import pytest
import requests
from clearml.utilities.requests_toolbelt import MultipartEncoder
from server_testing import bearer, login, own_server, peak_rss_mb, raw_exchange, request_bytes

from common.waiting import wait_until
from localserver import start_server_process


def auth(server) -> dict:
    return bearer(login(server))


def upload(server, object_path: str, payload, headers) -> requests.Response:
    encoder = MultipartEncoder(fields={object_path: (object_path, payload, "application/octet-stream")})
    return requests.post(
        server.files_url, data=encoder, headers={**headers, "Content-Type": encoder.content_type}, timeout=60
    )


def raw_request(server, method: str, path: str, headers: dict) -> int:
    """Send ``path`` byte-for-byte (requests would normalise ``..`` away)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request(method, path, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def test_upload_download_head_delete(clearml_server):
    headers = auth(clearml_server)
    object_path = f"/demo/train.{uuid.uuid4().hex}/artifacts/stats/stats.json"
    response = upload(clearml_server, object_path, b'{"a": 1}', headers)
    assert response.status_code == 200 and response.json() == [object_path]
    url = clearml_server.files_url + object_path
    assert requests.get(url, headers=headers, timeout=5).content == b'{"a": 1}'
    head = requests.head(url, headers=headers, timeout=5)
    assert head.status_code == 200 and head.headers["Content-Length"] == "8"
    assert requests.delete(url, headers=headers, timeout=5).status_code == 200
    assert requests.get(url, headers=headers, timeout=5).status_code == 404
    assert requests.head(url, headers=headers, timeout=5).status_code == 404


def test_malformed_uploads_are_refused_and_store_nothing(clearml_server):
    headers = auth(clearml_server)
    url = clearml_server.files_url
    not_multipart = requests.post(url, data=b"raw", headers={**headers, "Content-Type": "text/plain"}, timeout=5)
    assert not_multipart.status_code == 400
    broken = b'--b\r\nContent-Disposition: form-data; name="broken.txt"\r\n\r\npartial data without end'
    response = requests.post(
        url, data=broken, headers={**headers, "Content-Type": "multipart/form-data; boundary=b"}, timeout=5
    )
    assert response.status_code == 400
    assert not list((clearml_server.data_dir / "files").rglob("broken.txt"))
    assert not list((clearml_server.data_dir / "files").rglob(".upload-*"))


def test_file_routes_refuse_missing_or_bad_tokens(clearml_server):
    good = auth(clearml_server)
    object_path = f"secret/{uuid.uuid4().hex}.txt"
    assert upload(clearml_server, object_path, b"secret", good).status_code == 200
    url = f"{clearml_server.files_url}/{object_path}"
    for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": "Basic eDp5"}):
        assert upload(clearml_server, "other.txt", b"x", headers).status_code == 401
        for method in ("GET", "HEAD", "DELETE"):
            assert requests.request(method, url, headers=headers, timeout=5).status_code == 401
    assert requests.get(url, headers=good, timeout=5).content == b"secret"


def test_paths_cannot_escape_the_store(clearml_server):
    headers = auth(clearml_server)
    data_dir = clearml_server.data_dir
    for object_path in ("../escaped.txt", "a/../../escaped.txt", "%2e%2e/escaped.txt", "..\\escaped.txt", "C:/x"):
        assert upload(clearml_server, object_path, b"evil", headers).status_code == 400, object_path
    assert not list(data_dir.rglob("escaped.txt")) and not (data_dir.parent / "escaped.txt").exists()
    for path in ("/files/../localserver.sqlite", "/files/%2e%2e/localserver.sqlite", "/files/a/%2E%2E/%2E%2E/x"):
        assert raw_request(clearml_server, "GET", path, headers) in (400, 404), path
        assert raw_request(clearml_server, "DELETE", path, headers) in (400, 404), path
    link = data_dir / "files" / f"link-{uuid.uuid4().hex[:6]}"
    link.symlink_to(data_dir)
    try:
        assert (
            requests.get(
                f"{clearml_server.files_url}/{link.name}/localserver.sqlite", headers=headers, timeout=5
            ).status_code
            == 400
        )
        assert upload(clearml_server, f"{link.name}/planted.txt", b"evil", headers).status_code == 400
        assert not (data_dir / "planted.txt").exists()
    finally:
        link.unlink()
    assert (data_dir / "localserver.sqlite").exists()


@pytest.mark.slow
def test_large_files_are_streamed_not_buffered(tmp_path):
    server = start_server_process(tmp_path / "data", port=0)
    try:
        headers = auth(server)
        size = 96 * 1024 * 1024
        source = tmp_path / "big.bin"
        with source.open("wb") as handle:
            for _ in range(size // (1024 * 1024)):
                handle.write(os.urandom(1024 * 1024))
        baseline = peak_rss_mb(server.pid)
        with source.open("rb") as handle:
            assert upload(server, "big/big.bin", handle, headers).status_code == 200
        received = 0
        with requests.get(f"{server.files_url}/big/big.bin", headers=headers, stream=True, timeout=60) as response:
            for chunk in response.iter_content(1024 * 1024):
                received += len(chunk)
        assert received == size
        assert (server.data_dir / "files" / "big" / "big.bin").stat().st_size == size
        assert peak_rss_mb(server.pid) - baseline < 32, "the server held the file in memory"
    finally:
        server.stop()


def _multipart(parts: dict[str, bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for name, data in parts.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_failed_multi_part_upload_stores_none_of_its_parts(tmp_path):
    with own_server(tmp_path / "data", max_upload_mb=1) as server:
        token = login(server)
        stored = server.data_dir / "files"
        body, content_type = _multipart({"multi/first.bin": b"1" * 1000, "multi/second.bin": b"2" * 1000})
        headers = {**bearer(token), "Content-Type": content_type, "Content-Length": str(len(body))}
        # The client leaves after the first part and half of the second.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request_bytes("POST", "/files", headers, body[: len(body) - 600]))
        # The body never ends (a malformed last part).
        truncated = requests.post(
            server.files_url, data=body[:-30], headers={**headers, "Content-Length": None}, timeout=5
        )
        assert truncated.status_code == 400
        # Larger than --max-upload-mb, streamed without a declared length.
        big, big_type = _multipart({"multi/first.bin": b"1", "multi/huge.bin": b"x" * (2 * 1024 * 1024)})
        try:
            too_big = requests.post(
                server.files_url,
                data=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
                headers={**bearer(token), "Content-Type": big_type},
                timeout=10,
            ).status_code
        except requests.ConnectionError:  # the server may close before the client has sent its last bytes
            too_big = None
        assert too_big in (413, None)
        headers_only = request_bytes(
            "POST", "/files", {**bearer(token), "Content-Type": big_type, "Content-Length": str(len(big))}
        )
        assert raw_exchange(server, headers_only).status == 413  # refused from the declared length
        wait_until(lambda: not any((server.data_dir / "uploads-tmp").iterdir()), 10, "the temp files removed", 0.05)
        assert not list(stored.rglob("*.bin"))
        complete = requests.post(server.files_url, data=body, headers={**headers}, timeout=5)
        assert complete.json() == ["multi/first.bin", "multi/second.bin"]
        assert (stored / "multi" / "second.bin").read_bytes() == b"2" * 1000


def test_interrupted_uploads_are_swept_at_start_and_never_served(tmp_path):
    data_dir = tmp_path / "data"
    legacy = data_dir / "files" / "demo" / ".upload-abc12345"  # where older versions kept temp files
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"half an upload")
    user_object = legacy.parent / ".upload-notes.txt"  # not a temp file's name: an object, kept
    user_object.write_bytes(b"notes")
    (data_dir / "uploads-tmp").mkdir()
    (data_dir / "uploads-tmp" / "upload-xyz").write_bytes(b"half another")
    with own_server(data_dir) as server:
        assert not legacy.exists() and not any((data_dir / "uploads-tmp").iterdir()) and user_object.exists()
        response = requests.get(f"{server.files_url}/demo/.upload-abc12345", headers=bearer(login(server)), timeout=5)
        assert response.status_code == 404


def test_delete_many_refuses_malformed_bodies(clearml_server):
    headers = auth(clearml_server)
    object_path = f"many/{uuid.uuid4().hex}.txt"
    assert upload(clearml_server, object_path, b"x", headers).status_code == 200
    url = f"{clearml_server.files_url}/delete_many"
    for body in (b"not json", b"[1, 2]", b'{"files": "a.txt"}', b'{"files": [1]}', b"\xff\xfe"):
        response = requests.post(url, data=body, headers=headers, timeout=5)
        assert response.status_code == 400 and "delete_many" in response.json()["error"], body
    deleted = requests.post(url, json={"files": [object_path, "many/absent.txt"]}, headers=headers, timeout=5)
    assert deleted.json() == {"deleted": [object_path]}

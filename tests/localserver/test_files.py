"""Fileserver under /files: upload/download/HEAD/DELETE, auth, path escapes, and streaming of large files."""

from __future__ import annotations

import http.client
import os
import uuid

import requests
from clearml.utilities.requests_toolbelt import MultipartEncoder
from server_testing import peak_rss_mb

from localserver import start_server_process


def auth(server) -> dict:
    from server_testing import login

    return {"Authorization": f"Bearer {login(server)}"}


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

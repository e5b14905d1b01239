"""HTTP layer: routing (``/vX.Y/service.action`` or bare), bodies on any method, envelope, auth, ``/files``.

Every response carries ``Connection: close``: the SDK forks reporter processes that inherit pooled connections,
and a kept-alive socket shared by two processes hangs one of them.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import api
from .api import ENDPOINTS
from .errors import ApiError, bad_request
from .files import CHUNK, MultipartUpload, content_type

log = logging.getLogger("localserver")

_API_PATH = re.compile(r"^/(?:api/)?(?:v(?P<version>\d+\.\d+)/)?(?P<endpoint>[a-z_]+\.[a-z_]+)/?$")
MAX_JSON_BODY = 512 * 1024 * 1024


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address, app):
        self.app = app  # the LocalServer: store, auth, files
        super().__init__(address, RequestHandler)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalHTTPServer

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_OPTIONS(self):  # the base class would answer 501 for an unknown method
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        self.close_connection = True
        url = urlsplit(self.path)
        try:
            if url.path == "/files" or url.path.startswith("/files/"):
                self._files(method, url.path[len("/files") :].lstrip("/"))
            else:
                self._api(method, url.path, url.query)
        except ConnectionError:
            log.debug("client went away during %s %s", method, url.path)

    # API
    def _api(self, method: str, path: str, query: str) -> None:
        match = _API_PATH.match(path)
        endpoint = match["endpoint"] if match else path.strip("/")
        version = match["version"] if match else None
        trx = uuid.uuid4().hex
        try:
            body = self._json_body(endpoint, query)
            if endpoint == "auth.login":
                token = self.server.app.auth.login(self.headers.get("Authorization"), body.get("expiration_sec"))
                data = {"token": token}
            else:
                user = self.server.app.auth.verify(self.headers.get("Authorization"))
                if not match or endpoint not in ENDPOINTS:
                    log.warning("unknown endpoint %s %s", method, path)
                    raise ApiError(400, 0, f"Unknown endpoint: {endpoint}")
                data = api.call(self.server.app, endpoint, body, user, self.headers.get("X-ClearML-Worker"))
            self._send_envelope(200, 0, "OK", endpoint, version, trx, data)
        except ApiError as exc:
            log.info("%s -> %d/%d %s", endpoint, exc.code, exc.subcode, exc.msg)
            self._send_envelope(exc.code, exc.subcode, exc.msg, endpoint, version, trx, {})
        except ConnectionError:
            raise
        except Exception as exc:  # noqa: BLE001 - never a 5xx: the SDK retries/waits on some for minutes
            log.error("internal error in %s: %s\n%s", endpoint, exc, traceback.format_exc())
            self._send_envelope(400, 0, f"Internal error: {exc}", endpoint, version, trx, {})

    def _json_body(self, endpoint: str, query: str) -> dict:
        raw = self._read_all()
        body: object = {}
        text = raw.decode("utf-8", "replace").strip() if raw else ""
        if text and endpoint == "events.add_batch":
            body = _event_batch(text)
        elif text:
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                raise bad_request("Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        for key, value in parse_qsl(query, keep_blank_values=True):
            body.setdefault(key, _query_value(value))
        return body

    def _read_all(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._chunks())
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_JSON_BODY:
            raise bad_request("Request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _chunks(self):
        """The body chunks, whichever framing the client used."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                raise ConnectionError("body truncated")
            remaining -= len(chunk)
            yield chunk

    def _send_envelope(self, code, subcode, msg, endpoint, version, trx, data) -> None:
        meta = {
            "id": uuid.uuid4().hex,
            "trx": trx,
            "endpoint": {"name": endpoint, "requested_version": version, "actual_version": version},
            "result_code": code,
            "result_subcode": subcode,
            "result_msg": msg,
            "error_stack": None,
            "error_data": {},
        }
        self._send_json(code, {"meta": meta, "data": data})

    def _send_json(self, code: int, payload) -> None:
        encoded = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(encoded)

    # files
    def _files(self, method: str, object_path: str) -> None:
        files = self.server.app.files
        try:
            self.server.app.auth.verify(self.headers.get("Authorization"))
            if method in ("POST", "PUT"):
                self._upload(object_path)
            elif method in ("GET", "HEAD"):
                target = files.resolve(object_path)
                if not target.is_file():
                    self._send_json(404, {"error": f"File not found: {object_path}"})
                    return
                self._send_file(target, head=method == "HEAD")
            elif method == "DELETE":
                if not files.delete(object_path):
                    self._send_json(404, {"error": f"File not found: {object_path}"})
                    return
                self._send_json(200, {"deleted": object_path})
            else:
                self._send_json(405, {"error": f"Method not allowed: {method}"})
        except ApiError as exc:
            log.info("files %s %s -> %d %s", method, object_path, exc.code, exc.msg)
            self._send_json(exc.code, {"error": exc.msg})
        except OSError as exc:  # e.g. a full disk; ConnectionError (client gone) is handled by the caller
            if isinstance(exc, ConnectionError):
                raise
            log.error("files %s %s failed: %s", method, object_path, exc)
            self._send_json(400, {"error": f"File operation failed: {exc}"})

    def _upload(self, prefix: str) -> None:
        if prefix == "delete_many":
            body = json.loads(self._read_all() or b"{}")
            deleted = [p for p in body.get("files") or [] if self.server.app.files.delete(p)]
            self._send_json(200, {"deleted": deleted})
            return
        upload = MultipartUpload(self.server.app.files, self.headers.get("Content-Type", ""), prefix)
        try:
            for chunk in self._chunks():
                upload.write(chunk)
            stored = upload.finish()
        except BaseException:
            upload.abort()
            raise
        self._send_json(200, stored)

    def _send_file(self, target, head: bool) -> None:
        size = target.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", content_type(target))
        self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        with target.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                self.wfile.write(chunk)


def _event_batch(text: str) -> dict:
    """``events.add_batch`` bodies are JSON lines (one event each), or ``{"requests": [...]}`` / a JSON list."""
    try:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        try:
            lines = [json.loads(text)]
        except json.JSONDecodeError:
            raise bad_request("events.add_batch body is not valid JSON lines") from None
    if len(lines) == 1 and isinstance(lines[0], list):
        return {"requests": lines[0]}
    if len(lines) == 1 and isinstance(lines[0], dict) and "requests" in lines[0]:
        return lines[0]
    return {"requests": lines}


def _query_value(value: str):
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value

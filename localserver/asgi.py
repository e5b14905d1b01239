"""The HTTP API and the fileserver as a Starlette app (:func:`create_app`); :mod:`localserver.transport` serves it.

Routes, first match wins:
- API: ``/service.action`` with any ``/vX.Y/`` and ``/api/`` prefix, any method, a JSON body (``events.add_batch``:
  JSON lines) merged with the query string; answered with the envelope ``{"meta": {...}, "data": {...}}``.
- ``/files`` and ``/files/<object path>``: multipart upload (POST/PUT), download (GET/HEAD, streamed), DELETE,
  ``POST /files/delete_many``; errors answered ``{"error": "..."}``.
- ``extra_routes`` (the web UI), then every other path: the envelope (401 without a token, else 400 unknown).

Credentials are checked from the headers before any body is read, so an unauthenticated request costs its headers
only. Bodies are read with a size limit and a timeout between chunks. Endpoint handlers touch SQLite and never
run on the event loop: read-only ones on the server's one reader thread, the others on its one writer thread
(readers take turns on the read connection and writers on the write lock anyway, see localserver.store; one
thread each spares a convoy of many on the locks: 16 clients got their answers twice as fast). Internal errors
are logged with a traceback and an error id and answered 500 with that id only (500 is not among the codes the
SDK retries or waits on: 502/503/509/429).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound

from . import api, jsoncodec
from .api import ENDPOINTS
from .auth import WRONG_KEYS_SUBCODE, LoginThrottled
from .errors import ApiError, bad_request
from .files import CHUNK, MultipartUpload, content_type
from .limits import MB

log = logging.getLogger("localserver")

API_PATH = re.compile(r"^/(?:api/)?(?:v(?P<version>\d+\.\d+)/)?(?P<endpoint>[a-z_]+\.[a-z_]+)/?$")
FILES_PATH = re.compile(r"^/files(?:/|$)")
ANY_PATH = re.compile(r"")


class ClientGone(Exception):
    """The client closed the connection before its body was complete: nobody is left to answer."""


def envelope_bytes(code: int, subcode: int, msg: str, endpoint=None, version=None, data=None, meta_id=None) -> bytes:
    meta = {
        "id": meta_id or uuid.uuid4().hex,
        "trx": uuid.uuid4().hex,
        "endpoint": {"name": endpoint, "requested_version": version, "actual_version": version},
        "result_code": code,
        "result_subcode": subcode,
        "result_msg": msg,
        "error_stack": None,
        "error_data": {},
    }
    if isinstance(data, api.Encoded):
        return b'{"meta": ' + json.dumps(meta).encode() + b', "data": ' + data.json + b"}"
    return json.dumps({"meta": meta, "data": {} if data is None else data}).encode()


def create_app(server, extra_routes: Sequence[BaseRoute] | Callable[[object], Sequence[BaseRoute]] = ()):
    """The ASGI app for ``server`` (a :class:`~localserver.server.LocalServer`: store, auth, files, limits, login
    throttle). ``extra_routes`` (routes, or a function of ``server`` that returns them, such as
    ``localserver.webui.routes``) are tried after the API and ``/files`` routes and before the catch-all."""
    if callable(extra_routes):
        extra_routes = extra_routes(server)
    routes = [
        PatternRoute(FILES_PATH, lambda request: _files(server, request)),
        *extra_routes,
        PatternRoute(ANY_PATH, lambda request: _api(server, request)),
    ]
    return ApiFirst(server, Starlette(routes=routes))


class ApiFirst:
    """API calls, nearly every request the SDK and the agent make, go straight to their handler (which answers
    every error itself); the rest to ``app``. Starlette's router and middleware cost as much as a small call."""

    def __init__(self, server, app: Starlette):
        self.server = server
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and API_PATH.match(scope["path"]):
            response = await _api(self.server, Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class PatternRoute(BaseRoute):
    """Any method on a path matching ``pattern`` (a regular expression searched from the path's start)."""

    def __init__(self, pattern: re.Pattern, endpoint: Callable[[Request], Awaitable[Response]]):
        self.pattern = pattern
        self.endpoint = endpoint

    def matches(self, scope) -> tuple[Match, dict]:
        if scope["type"] == "http" and self.pattern.match(scope["path"]):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params):
        raise NoMatchFound(name, path_params)

    async def handle(self, scope, receive, send) -> None:
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


# Bodies
def _too_large(limit: int) -> ApiError:
    return ApiError(413, 0, f"Request body larger than the server's limit of {limit // MB} MiB")


async def _body_chunks(request: Request, limit: int, timeout: float) -> AsyncIterator[bytes]:
    """The request body as it arrives: at most ``limit`` bytes, each chunk within ``timeout`` seconds."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    received = 0
    while True:
        try:
            with anyio.fail_after(timeout):
                message = await request.receive()
        except TimeoutError:
            raise ApiError(408, 0, f"Request body stalled for more than {timeout:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    return b"".join([chunk async for chunk in _body_chunks(request, limit, timeout)])


def _request_body(endpoint: str, raw: bytes, query: str) -> dict:
    text = raw.decode("utf-8", "replace").strip() if raw else ""
    body: object = {}
    if text and endpoint == "events.add_batch":
        body = _event_batch(text)
    elif text:
        try:
            body = jsoncodec.parse(text)
        except json.JSONDecodeError:
            raise bad_request("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object")
    for key, value in parse_qsl(query, keep_blank_values=True):
        body.setdefault(key, _query_value(value))
    return body


def _event_batch(text: str) -> dict:
    """``events.add_batch`` bodies are JSON lines (one event each), or ``{"requests": [...]}`` / a JSON list."""
    try:
        lines = [jsoncodec.parse(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        try:
            lines = [jsoncodec.parse(text)]
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
        return jsoncodec.bounded_int(value)
    return value


def _internal_error(what: str) -> str:
    """Log the current exception with a new error id; the message for the client names only the id."""
    error_id = uuid.uuid4().hex
    log.exception("internal error %s in %s", error_id, what)
    return error_id


# API
def _envelope_response(code, subcode, msg, endpoint, version, meta_id=None, headers=None) -> Response:
    content = envelope_bytes(code, subcode, msg, endpoint, version, meta_id=meta_id)
    return Response(content, code, headers=headers, media_type="application/json")


async def _api(server, request: Request) -> Response:
    path = request.scope["path"]
    match = API_PATH.match(path)
    endpoint = match["endpoint"] if match else path.strip("/")
    version = match["version"] if match else None
    query = request.scope.get("query_string", b"").decode("latin-1")
    limits = server.limits
    try:
        authorization = request.headers.get("authorization")
        if match and endpoint == "auth.login":
            return await _login(server, request, authorization, version, query)
        user = server.auth.verify(authorization)
        if not match or endpoint not in ENDPOINTS:
            log.warning("unknown endpoint %s %s", request.method, path)
            raise ApiError(400, 0, f"Unknown endpoint: {endpoint}")
        raw = await _read_body(request, limits.max_json_body, limits.body_timeout)
        worker = request.headers.get("x-clearml-worker")
        run = functools.partial(_run_endpoint, server, endpoint, version, raw, query, user, worker)
        executor = server.reader if endpoint in api.READ_ONLY else server.writer
        content = await asyncio.get_running_loop().run_in_executor(executor, run)
        return Response(content, media_type="application/json")
    except ApiError as exc:
        log.info("%s -> %d/%d %s", endpoint, exc.code, exc.subcode, exc.msg)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, LoginThrottled) else None
        return _envelope_response(exc.code, exc.subcode, exc.msg, endpoint, version, headers=headers)
    except ClientGone:
        log.debug("client left during %s", endpoint)
        return Response(status_code=400)
    except Exception:  # noqa: BLE001 - answered, never a dropped socket or internal text
        error_id = _internal_error(endpoint)
        msg = f"Internal server error (id {error_id}); the server log has the details"
        return _envelope_response(500, 0, msg, endpoint, version, meta_id=error_id)


def _run_endpoint(server, endpoint, version, raw: bytes, query: str, user: str, worker: str | None) -> bytes:
    """Decode, run and encode in a worker thread: large bodies and answers must not stall the event loop."""
    data = api.call(server, endpoint, _request_body(endpoint, raw, query), user, worker)
    return envelope_bytes(200, 0, "OK", endpoint, version, data)


async def _login(server, request: Request, authorization: str | None, version, query: str) -> Response:
    address = request.client.host if request.client else ""
    server.login_throttle.check(address)
    try:
        user_id, access_key = server.auth.check_credentials(authorization)
    except ApiError as exc:
        if exc.subcode == WRONG_KEYS_SUBCODE:
            server.login_throttle.failed(address)
        raise
    raw = await _read_body(request, server.limits.max_json_body, server.limits.body_timeout)
    body = await run_in_threadpool(_request_body, "auth.login", raw, query)
    issue = functools.partial(_issue_token, server, user_id, access_key, address, body.get("expiration_sec"))
    token = await asyncio.get_running_loop().run_in_executor(server.writer, issue)
    content = envelope_bytes(200, 0, "OK", "auth.login", version, {"token": token})
    return Response(content, media_type="application/json")


def _issue_token(server, user_id: str, access_key: str, address: str, expiration_sec) -> str:
    """A token for a checked key pair, recording when and from where the pair was last used."""
    with server.store.transaction() as store:
        user = store.user(user_id)
        if access_key != server.auth.access_key:
            store.credential_used(access_key, api.now(), address)
        return server.auth.issue(user, access_key, expiration_sec)


# Files
def _file_error(code: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg}, code)


async def _files(server, request: Request) -> Response:
    # The raw path, decoded once by FileStore.resolve (the ASGI "path" is already percent-decoded).
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    object_path = raw_path.decode("latin-1")[len("/files") :].lstrip("/")
    method = request.method
    files = server.files
    try:
        server.auth.verify(request.headers.get("authorization"))
        if method in ("POST", "PUT") and object_path == "delete_many":
            raw = await _read_body(request, server.limits.max_json_body, server.limits.body_timeout)
            return JSONResponse({"deleted": await run_in_threadpool(files.delete_many, raw)})
        if method in ("POST", "PUT"):
            return JSONResponse(await _upload(server, request, object_path))
        if method in ("GET", "HEAD"):
            target = await run_in_threadpool(files.resolve, object_path)
            if not await run_in_threadpool(target.is_file):
                return _file_error(404, f"File not found: {object_path}")
            return FileResponse(target, media_type=content_type(target))
        if method == "DELETE":
            if not await run_in_threadpool(files.delete, object_path):
                return _file_error(404, f"File not found: {object_path}")
            return JSONResponse({"deleted": object_path})
        return _file_error(405, f"Method not allowed: {method}")
    except ApiError as exc:
        log.info("files %s %s -> %d %s", method, object_path, exc.code, exc.msg)
        return _file_error(exc.code, exc.msg)
    except ClientGone:
        log.info("files %s %s: the client left before the body was complete", method, object_path)
        return Response(status_code=400)
    except Exception:  # noqa: BLE001 - e.g. a full disk: logged, answered without internal text
        error_id = _internal_error(f"files {method} {object_path}")
        return _file_error(500, f"Internal server error (id {error_id}); the server log has the details")


async def _upload(server, request: Request, prefix: str) -> list[str]:
    """Stream the multipart body to temp files, handing the parser about 1 MiB at a time to a worker thread."""
    upload = MultipartUpload(server.files, request.headers.get("content-type", ""), prefix)
    pending: list[bytes] = []
    pending_size = 0
    try:
        async for chunk in _body_chunks(request, server.limits.max_upload, server.limits.body_timeout):
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= CHUNK:
                await run_in_threadpool(upload.write, b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            await run_in_threadpool(upload.write, b"".join(pending))
        return await run_in_threadpool(upload.finish)
    except BaseException:
        upload.abort()
        raise

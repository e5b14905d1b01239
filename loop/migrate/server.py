"""One end of a migration: a ClearML server named by its `clearml.conf`, spoken to through its public REST API
and its files server, as the SDK speaks to them (`POST /v2.23/<service>.<action>`, a Bearer token from
`auth.login`; files as multipart uploads and streamed downloads carrying the same token).

Both ends live in one process, so nothing here reads the SDK's global configuration or environment variables:
each `Server` has its own keys, token and HTTP session. A transient failure (no connection, a timeout, HTTP 429
or 5xx) is retried with exponential backoff; anything else is permanent and raised as `ServerError`.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import orjson
import requests
from clearml.utilities.pyhocon import ConfigFactory
from clearml.utilities.requests_toolbelt import MultipartEncoder

from loop.errors import StageError

API_VERSION = "2.23"  # the request shapes of the SDK this project pins
TIMEOUT_S = (10, 300)  # connect, read
ATTEMPTS = 6
BACKOFF_S = 0.5  # doubled after each failed attempt: 0.5, 1, 2, 4, 8 s
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504, 509})
CHUNK = 1024 * 1024
PAGE_SIZE = 500


class Transient(Exception):
    """A failure worth another attempt."""


class ServerError(StageError):
    """A permanent failure of one request (the server's message and codes included)."""

    def __init__(self, message: str, code: int = 0, subcode: int = 0):
        super().__init__(message)
        self.code, self.subcode = code, subcode


@dataclass(frozen=True)
class Endpoint:
    """What a `clearml.conf` says about its server."""

    config: Path
    api: str
    files: str
    web: str
    access_key: str
    secret_key: str

    @classmethod
    def from_config(cls, path: str | Path) -> Endpoint:
        path = Path(path).expanduser()
        if not path.is_file():
            raise StageError(f"no ClearML configuration at {path}")
        try:
            api = ConfigFactory.parse_file(str(path)).get("api", {})
        except Exception as error:  # pyhocon raises its own parse errors
            raise StageError(f"{path} is not a readable clearml.conf: {error}") from None
        credentials = api.get("credentials", {})
        values = {
            "api": api.get("api_server", ""),
            "files": api.get("files_server", ""),
            "web": api.get("web_server", ""),
            "access_key": credentials.get("access_key", ""),
            "secret_key": credentials.get("secret_key", ""),
        }
        missing = [f"api.{key}" for key, value in values.items() if not value and key not in ("web",)]
        if missing:
            raise StageError(f"{path} does not set {', '.join(missing)}")
        return cls(config=path, **{key: str(value).rstrip("/") for key, value in values.items()})


class Server:
    def __init__(self, endpoint: Endpoint, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S):
        self.endpoint = endpoint
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._http = requests.Session()
        self._http.headers["X-ClearML-Client"] = "selfimproving-classifier-migrate"
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"Server({self.endpoint.api})"

    def close(self) -> None:
        self._http.close()

    # the REST API
    def call(self, action: str, **body) -> dict:
        """`action` (`service.action`) with `body`; its `data`. Logs in on first use and again on a 401."""
        return self._post(action, orjson.dumps(body), "application/json")

    def send_lines(self, action: str, items: list[dict]) -> dict:
        """`action` with a JSON-lines body, one item a line (how `events.add_batch` takes its events)."""
        return self._post(action, b"\n".join(map(orjson.dumps, items)), "application/json-lines")

    def _post(self, action: str, body: bytes, content_type: str) -> dict:
        for relogin in (False, True):
            if self._token is None or relogin:
                self._token = self._login()
            headers = {"Authorization": f"Bearer {self._token}", "Content-Type": content_type}
            url = f"{self.endpoint.api}/v{API_VERSION}/{action}"
            response = self._send(
                functools.partial(self._http.post, url, data=body, headers=headers, timeout=TIMEOUT_S), action
            )
            if response.status_code != 401:
                break
        return _data(response, action)

    def pages(self, action: str, key: str, page_size: int = PAGE_SIZE, **body):
        """Every document `action` lists under `key`, fetched a page at a time (the query must be ordered)."""
        page = 0
        while True:
            batch = self.call(action, **body, page=page, page_size=page_size).get(key) or []
            yield from batch
            if len(batch) < page_size:
                return
            page += 1

    def _login(self) -> str:
        response = self._send(
            lambda: self._http.get(
                f"{self.endpoint.api}/auth.login",
                auth=(self.endpoint.access_key, self.endpoint.secret_key),
                timeout=TIMEOUT_S,
            ),
            "auth.login",
        )
        return _data(response, "auth.login")["token"]

    def _send(self, request, what: str):
        """`request()`, again while it fails transiently: no connection, a timeout, a cut stream, or an HTTP
        status of `TRANSIENT_STATUS` (a response; `request` may also raise `Transient` itself)."""
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                result = request()
                if isinstance(result, requests.Response) and result.status_code in TRANSIENT_STATUS:
                    raise Transient(f"HTTP {result.status_code}")
                return result
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
                failure = f"{type(error).__name__}: {error}"
            except Transient as error:
                failure = str(error)
            if attempt == self.attempts:
                raise ServerError(f"{what} at {self.endpoint.api} failed {attempt} times, last: {failure}")
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    # the files server
    def holds(self, url: str | None) -> bool:
        """Whether `url` is a file on this server's files server (so it can be copied and must be)."""
        return bool(url) and (url == self.endpoint.files or url.startswith(self.endpoint.files + "/"))

    def object_path(self, url: str) -> str:
        return url[len(self.endpoint.files) :].lstrip("/")

    def url_of(self, object_path: str) -> str:
        return f"{self.endpoint.files}/{quote(object_path.lstrip('/'), safe='/')}"

    def download(self, url: str, handle: BinaryIO) -> tuple[int, str]:
        """Stream the file at `url` into `handle` (from its start); its size and SHA-256."""

        def get() -> tuple[int, str]:
            handle.seek(0)
            handle.truncate()
            with self._http.get(url, headers=self._file_headers(), stream=True, timeout=TIMEOUT_S) as response:
                if response.status_code in TRANSIENT_STATUS:
                    raise Transient(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    raise ServerError(f"GET {url}: HTTP {response.status_code}", response.status_code)
                digest, size = hashlib.sha256(), 0
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            handle.flush()
            return size, digest.hexdigest()

        return self._send(get, f"GET {url}")

    def size(self, url: str) -> int:
        """The size of the file at `url` (0 when the server does not say)."""
        response = self._send(lambda: self._http.head(url, headers=self._file_headers(), timeout=TIMEOUT_S), url)
        return int(response.headers.get("Content-Length") or 0) if response.status_code == 200 else 0

    def upload(self, object_path: str, handle: BinaryIO, file_name: str) -> str:
        """Upload `handle` (streamed, never read whole) as `object_path`; the file's URL."""

        def post() -> requests.Response:
            handle.seek(0)
            form = MultipartEncoder(fields={object_path: (file_name, handle, "application/octet-stream")})
            headers = {**self._file_headers(), "Content-Type": form.content_type}
            return self._http.post(self.endpoint.files, data=form, headers=headers, timeout=TIMEOUT_S)

        response = self._send(post, f"upload of {object_path}")
        if response.status_code != 200:
            raise ServerError(f"upload of {object_path}: HTTP {response.status_code} {response.text[:200]}")
        return self.url_of(object_path)

    def _file_headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = self._login()
        return {"Authorization": f"Bearer {self._token}"}


def _data(response: requests.Response, action: str) -> dict:
    try:
        payload = response.json()
        meta = payload["meta"]
    except (ValueError, KeyError, TypeError):
        raise ServerError(
            f"{action}: HTTP {response.status_code}, not a ClearML answer", response.status_code
        ) from None
    code, subcode = meta.get("result_code", response.status_code), meta.get("result_subcode", 0)
    if code != 200:
        raise ServerError(f"{action}: {meta.get('result_msg')} ({code}/{subcode})", code, subcode)
    return payload.get("data") or {}

"""Running the server: :class:`LocalServer` (bound, not yet serving), :class:`EmbeddedServer` (a thread) and
:func:`start_server_process` (a ``python -m localserver serve`` subprocess)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common.waiting import wait_until

from . import SERVER_VERSION
from .api import Context, ResultCache, load_services
from .api import queues as queues_api
from .asgi import create_app
from .auth import LoginThrottle, TokenAuthority, load_or_create_credentials
from .clientconfig import client_env, write_client_config
from .files import FileStore
from .limits import Limits
from .store import Store
from .transport import UvicornServer, bind
from .users import ADMIN_ID
from .watchdog import Watchdog, timeout_from_env
from .webui import routes as webui_routes

log = logging.getLogger("localserver")


DATABASE = "localserver.sqlite"
HISTOGRAM_CACHE_BYTES = 64 << 20


def open_store(data_dir: Path) -> Store:
    """The data dir's store, with the data dir private (0700) and the database and its WAL files 0600: they
    hold the keys and the token signing secret."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    database = data_dir / DATABASE
    os.close(os.open(database, os.O_CREAT | os.O_RDWR, 0o600))  # SQLite gives -wal/-shm the database's mode
    for path in (database, data_dir / f"{DATABASE}-wal", data_dir / f"{DATABASE}-shm"):
        if path.exists():
            path.chmod(0o600)
    return Store(database)


class LocalServer:
    """Opens the store under ``data_dir`` and binds ``host:port`` (0 picks a free port); :meth:`serve_forever`
    then serves the API, ``/files`` and ``extra_routes`` (Starlette routes, or a function of this server that
    returns them; by default the web UI; see :func:`localserver.asgi.create_app`). ``app`` is the Starlette app."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str | None = None,
        secret_key: str | None = None,
        task_timeout_sec: float | None = None,
        *,
        limits: Limits | None = None,
        extra_routes=webui_routes,
    ):
        load_services()
        self.data_dir = Path(data_dir).resolve()
        self.limits = limits or Limits()
        self.store = open_store(self.data_dir)
        self.access_key, self.secret_key = load_or_create_credentials(self.store, access_key, secret_key)
        self.auth = TokenAuthority(self.store, self.access_key, self.secret_key, SERVER_VERSION)
        self.login_throttle = LoginThrottle(self.limits.login_failures_per_minute)
        self.histograms = ResultCache(HISTOGRAM_CACHE_BYTES)
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="localserver-reader")  # see localserver.asgi
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="localserver-writer")
        self.files = FileStore(self.data_dir / "files", self.data_dir / "uploads-tmp")
        self._ensure_default_queue()
        self.app = create_app(self, extra_routes)
        try:
            self.socket = bind(host, port)
        except OSError:
            self.store.close()
            raise
        self.host, self.port = self.socket.getsockname()[:2]
        self._uvicorn = UvicornServer(self.app, self.socket, self.limits)
        self.watchdog = Watchdog(self, task_timeout_sec or timeout_from_env())

    def _ensure_default_queue(self) -> None:
        with self.store.transaction():
            ctx = Context(self.store, ADMIN_ID, None, self)
            if not any("default" in (q.get("system_tags") or []) for q in self.store.scan("queues")):
                queues_api.create_queue(ctx, "default", system_tags=["default"])

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def files_url(self) -> str:
        return f"{self.api_url}/files"

    @property
    def web_url(self) -> str:
        return self.api_url

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread) or, in the main thread, SIGINT/SIGTERM."""
        self.watchdog.start()
        self._uvicorn.run()

    def shutdown(self) -> None:
        self._uvicorn.stop()

    def close(self) -> None:
        self.watchdog.stop()
        self.socket.close()
        self.reader.shutdown()
        self.writer.shutdown()
        self.store.close()


class EmbeddedServer:
    """The server in a background thread of this process.

    >>> with EmbeddedServer(tmp_dir) as server:
    ...     os.environ.update(server.client_env())
    """

    def __init__(
        self,
        data_dir,
        host="127.0.0.1",
        port=0,
        access_key=None,
        secret_key=None,
        *,
        limits=None,
        extra_routes=webui_routes,
    ):
        self._server = LocalServer(
            data_dir, host, port, access_key, secret_key, limits=limits, extra_routes=extra_routes
        )
        self._thread: threading.Thread | None = None
        self.data_dir = self._server.data_dir
        self.access_key, self.secret_key = self._server.access_key, self._server.secret_key
        self.api_url, self.files_url, self.web_url = (
            self._server.api_url,
            self._server.files_url,
            self._server.web_url,
        )
        self.port = self._server.port

    def start(self) -> EmbeddedServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="localserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_client_config(self, path) -> Path:
        return write_client_config(path, self.api_url, self.access_key, self.secret_key)

    def client_env(self, config_file=None) -> dict[str, str]:
        """CLEARML_* variables for clients; writes ``<data_dir>/clearml.conf`` unless ``config_file`` is given."""
        config_file = Path(config_file) if config_file else self.write_client_config(self.data_dir / "clearml.conf")
        return client_env(self.api_url, self.access_key, self.secret_key, config_file)


class ServerProcess:
    """A server running as ``python -m localserver serve`` (see :func:`start_server_process`)."""

    def __init__(self, process: subprocess.Popen, data_dir: Path, port: int, access_key: str, secret_key: str):
        self.process = process
        self.pid = process.pid
        self.data_dir = data_dir
        self.port = port
        self.access_key, self.secret_key = access_key, secret_key
        self.api_url = f"http://127.0.0.1:{port}"
        self.files_url = f"{self.api_url}/files"
        self.web_url = self.api_url

    def write_client_config(self, path) -> Path:
        return write_client_config(path, self.api_url, self.access_key, self.secret_key)

    def client_env(self, config_file=None) -> dict[str, str]:
        config_file = Path(config_file) if config_file else self.write_client_config(self.data_dir / "clearml.conf")
        return client_env(self.api_url, self.access_key, self.secret_key, config_file)

    def kill(self) -> None:
        """SIGKILL, as a crash would (durability tests)."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server_process(
    data_dir,
    port: int = 0,
    access_key: str | None = None,
    secret_key: str | None = None,
    log_file=None,
    timeout: float = 30,
    limits: Limits | None = None,
    web_extensions: Sequence[str] = (),
) -> ServerProcess:
    """Start ``python -m localserver serve`` on 127.0.0.1 and wait until ``auth.login`` answers.
    The keys go to the child through its environment, never its command line. ``web_extensions`` are
    ``module:name`` of :class:`localserver.webui.WebExtension` pages added to its web UI."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ready_file = data_dir / "server-ready.json"
    ready_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "localserver", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    command += ["--ready-file", str(ready_file), *(limits.as_argv() if limits else [])]
    command += [argument for spec in web_extensions for argument in ("--web-extension", spec)]
    env = dict(os.environ)
    if access_key and secret_key:
        env.update(CLEARML_API_ACCESS_KEY=access_key, CLEARML_API_SECRET_KEY=secret_key)
    else:
        env.pop("CLEARML_API_ACCESS_KEY", None)
        env.pop("CLEARML_API_SECRET_KEY", None)
    log_handle = open(log_file or data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
    try:
        process = subprocess.Popen(command, env=env, stdout=log_handle, stderr=subprocess.STDOUT)
    finally:
        log_handle.close()
    deadline = time.monotonic() + timeout

    def ready_or_exited() -> bool:
        return ready_file.exists() or process.poll() is not None

    with contextlib.suppress(TimeoutError):
        wait_until(ready_or_exited, timeout, "localserver to start", interval=0.05)
    if not ready_file.exists():
        if process.poll() is None:
            process.kill()
        process.wait()
        raise RuntimeError(f"localserver did not start (exit code {process.returncode}); see its log")
    ready = json.loads(ready_file.read_text())
    server = ServerProcess(process, data_dir, ready["port"], ready["access_key"], ready["secret_key"])
    wait_until_ready(server.api_url, server.access_key, server.secret_key, timeout=deadline - time.monotonic())
    return server


def wait_until_ready(api_url: str, access_key: str, secret_key: str, timeout: float = 10) -> None:
    """Poll a raw ``auth.login`` with a short timeout (an SDK client would retry for minutes instead)."""
    basic = base64.b64encode(f"{access_key}:{secret_key}".encode()).decode()
    request = urllib.request.Request(f"{api_url}/auth.login", headers={"Authorization": f"Basic {basic}"})

    def answers() -> bool:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    wait_until(answers, max(timeout, 1), f"{api_url}/auth.login to answer", interval=0.05)

"""A ClearML-compatible REST API server and fileserver on SQLite, for the unmodified clearml SDK and agent.

Command line::

    python -m localserver serve --data-dir DIR [--port 8008] [--host 127.0.0.1] [--access-key K]
                                [--secret-key-file FILE]   # or CLEARML_API_ACCESS_KEY/SECRET_KEY in the env
                                [--task-timeout SEC]       # watchdog: fail in_progress tasks silent that long
                                [limits, below]
    python -m localserver config --data-dir DIR [--port 8008] [--write clearml.conf]   # prints env exports
    python -m localserver users add|passwd NAME --data-dir DIR [--password-file F]      # or LOCALSERVER_PASSWORD
    python -m localserver users list|remove [NAME] --data-dir DIR                       # see localserver.users

API and files share one port: ``http://HOST:PORT`` (any ``/vX.Y/`` prefix) and ``http://HOST:PORT/files``.
Without explicit keys, keys are generated on first start and kept in the data dir; new keys revoke every token
issued under the old ones. ``--secret-key`` exists for tests only (argv is public; it prints a warning).

Python::

    from localserver import EmbeddedServer, start_server_process

    with EmbeddedServer(data_dir) as server:        # thread in this process, free port (port=0)
        env = server.client_env()                   # CLEARML_API_HOST/WEB_HOST/FILES_HOST/ACCESS_KEY/
                                                    # SECRET_KEY/CONFIG_FILE (low-retry clearml.conf)
        server.api_url, server.files_url, server.web_url
        server.write_client_config(path)

    proc = start_server_process(data_dir, port=0)   # subprocess; .pid .api_url .client_env() .stop() .kill()

Both take ``limits=Limits(...)``; ``EmbeddedServer``/``LocalServer`` also take ``extra_routes`` (Starlette routes
served after the API and ``/files``; by default the web UI of ``localserver/webui``).

HTTP: a Starlette app (``asgi.py``) on uvicorn (``transport.py``). Every response carries ``Connection: close``
(the SDK forks processes that inherit pooled connections). Credentials are checked from the headers before any
body is read. Limits (``serve`` options, ``limits.py``): ``--header-timeout`` (10 s from connecting to the end of
the headers), ``--body-timeout`` (30 s without a body byte: 408), ``--max-connections`` (1000; beyond it the
oldest connection still sending headers is closed, else the new one: never a 503, which the SDK waits on),
``--max-json-body-mb`` (64: 413), ``--max-upload-mb`` (8192: 413), ``--login-failures-per-minute`` (20 per
client address; then 429 with ``Retry-After``, which the SDK waits for). Tokens live at most 30 days
(``expiration_sec`` is clamped; a non-numeric or non-finite one is 400).

Data dir (0700): ``localserver.sqlite`` (0600, WAL; entities as JSON documents, events, queue entries, keys, the
token signing secret, users with their password hashes and key pairs with their secrets' hashes), ``files/``
(the fileserver's objects), ``uploads-tmp/`` (uploads in progress, emptied at start, never served);
``start_server_process`` adds ``server.log`` and the ready file (0600).
Errors always answer ``{"meta": ..., "data": {}}`` (the fileserver: ``{"error": ...}``), never a dropped socket:
unknown endpoints are logged and answered 400; internal errors are logged with a traceback and an error id and
answered 500 with the id only (500 is not among the codes the SDK retries or waits on: 502/503/509/429).
Every other path is the web UI (``localserver.webui``): sign in with a user name and password, or a key pair;
the links the SDK prints (``web_server`` is the API's own address) open their pages.
"""

SERVER_VERSION = "2.0.0"

from .clientconfig import client_env, write_client_config  # noqa: E402
from .limits import Limits  # noqa: E402
from .server import EmbeddedServer, LocalServer, ServerProcess, start_server_process  # noqa: E402

__all__ = [
    "SERVER_VERSION",
    "EmbeddedServer",
    "Limits",
    "LocalServer",
    "ServerProcess",
    "client_env",
    "start_server_process",
    "write_client_config",
]

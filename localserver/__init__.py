"""A ClearML-compatible REST API server and fileserver on SQLite, for the unmodified clearml SDK and agent.

Command line::

    python -m localserver serve --data-dir DIR [--port 8008] [--host 127.0.0.1]
                                [--access-key K --secret-key S]   # or CLEARML_API_ACCESS_KEY/SECRET_KEY
    python -m localserver config --data-dir DIR [--port 8008] [--write clearml.conf]   # prints env exports

API and files share one port: ``http://HOST:PORT`` (any ``/vX.Y/`` prefix) and ``http://HOST:PORT/files``.
Without explicit keys, keys are generated on first start and kept in the data dir.

Python::

    from localserver import EmbeddedServer, start_server_process

    with EmbeddedServer(data_dir) as server:        # thread in this process, free port (port=0)
        env = server.client_env()                   # CLEARML_API_HOST/WEB_HOST/FILES_HOST/ACCESS_KEY/
                                                    # SECRET_KEY/CONFIG_FILE (low-retry clearml.conf)
        server.api_url, server.files_url, server.web_url
        server.write_client_config(path)

    proc = start_server_process(data_dir, port=0)   # subprocess; .pid .api_url .client_env() .stop() .kill()

Data dir: ``localserver.sqlite`` (WAL; entities as JSON documents, events, queue entries, keys and the token
signing secret) and ``files/`` (the fileserver's objects); ``start_server_process`` adds ``server.log``.
Errors always answer ``{"meta": ..., "data": {}}``; unknown endpoints are logged and answered 400, and internal
errors are logged with a traceback and answered 400 too: never a 5xx, which the SDK may retry or wait on for
minutes (502/503). No web UI is served.
"""

SERVER_VERSION = "2.0.0"

from .clientconfig import client_env, write_client_config  # noqa: E402
from .server import EmbeddedServer, LocalServer, ServerProcess, start_server_process  # noqa: E402

__all__ = [
    "SERVER_VERSION",
    "EmbeddedServer",
    "LocalServer",
    "ServerProcess",
    "client_env",
    "start_server_process",
    "write_client_config",
]

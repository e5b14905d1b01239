"""``python -m localserver serve|config``: see the package docstring."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

from .auth import load_or_create_credentials
from .clientconfig import client_env, write_client_config
from .server import LocalServer
from .store import Store


def _keys(args) -> tuple[str | None, str | None]:
    return (
        args.access_key or os.environ.get("CLEARML_API_ACCESS_KEY"),
        args.secret_key or os.environ.get("CLEARML_API_SECRET_KEY"),
    )


def serve(args) -> None:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access_key, secret_key = _keys(args)
    server = LocalServer(args.data_dir, args.host, args.port, access_key, secret_key, args.task_timeout)
    # SIGTERM stops cleanly; every acknowledged write is already committed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.ready_file:
        ready = {"port": server.port, "pid": os.getpid(), "access_key": server.access_key}
        ready["secret_key"] = server.secret_key
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.ready_file)
    print(f"localserver {server.api_url} (files {server.files_url}), data in {server.data_dir}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C in a terminal reaches the whole process group
        print("localserver: interrupted, shutting down", flush=True)
    finally:
        server.close()


def config(args) -> None:
    access_key, secret_key = _keys(args)
    if not (access_key and secret_key):
        store = Store(Path(args.data_dir).resolve() / "localserver.sqlite")
        access_key, secret_key = load_or_create_credentials(store, None, None)
        store.close()
    api_url = f"http://{args.host}:{args.port}"
    config_file = write_client_config(args.write, api_url, access_key, secret_key) if args.write else None
    for key, value in client_env(api_url, access_key, secret_key, config_file and config_file.resolve()).items():
        print(f"export {key}={shlex.quote(value)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localserver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("serve", serve, "run the API server and fileserver"),
        ("config", config, "print CLEARML_* exports for clients (and optionally write a clearml.conf)"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(func=func)
        sub.add_argument("--data-dir", required=True, help="SQLite database and files folder")
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8008, help="0 picks a free port (serve)")
        sub.add_argument("--access-key", help="default: CLEARML_API_ACCESS_KEY, else the data dir's keys")
        sub.add_argument("--secret-key", help="default: CLEARML_API_SECRET_KEY, else the data dir's keys")
    serve_parser = commands.choices["serve"]
    serve_parser.add_argument("--ready-file", help="write {port, pid, keys} here once listening")
    serve_parser.add_argument("--log-level", default="info")
    serve_parser.add_argument(
        "--task-timeout",
        type=float,
        help="seconds without a sign of life after which an in_progress task is marked failed "
        "(default: LOCALSERVER_TASK_TIMEOUT_SEC, else 7200, as clearml-server)",
    )
    commands.choices["config"].add_argument("--write", metavar="CLEARML_CONF", help="also write a clearml.conf")
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

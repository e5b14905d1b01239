"""``python -m localserver serve|config|users``: see the package docstring."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import shlex
import signal
import sys
from functools import partial
from pathlib import Path

from . import users
from .auth import load_or_create_credentials
from .clientconfig import client_env, write_client_config, write_private
from .limits import Limits
from .server import LocalServer, open_store
from .webui import load_extension, routes


def _keys(args) -> tuple[str | None, str | None]:
    """Keys from the options, else CLEARML_API_ACCESS_KEY/SECRET_KEY; the secret preferably from a file."""
    secret_key = args.secret_key
    if secret_key:
        print(
            "localserver: warning: --secret-key is visible to every user in the process list; "
            "use --secret-key-file or CLEARML_API_SECRET_KEY",
            file=sys.stderr,
            flush=True,
        )
    elif args.secret_key_file:
        try:
            secret_key = Path(args.secret_key_file).read_text().strip()
        except OSError as exc:
            raise SystemExit(f"localserver: cannot read --secret-key-file: {exc}") from None
        if not secret_key:
            raise SystemExit(f"localserver: --secret-key-file {args.secret_key_file} is empty")
    return (
        args.access_key or os.environ.get("CLEARML_API_ACCESS_KEY"),
        secret_key or os.environ.get("CLEARML_API_SECRET_KEY"),
    )


def serve(args) -> None:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access_key, secret_key = _keys(args)
    try:
        extensions = [load_extension(spec) for spec in args.web_extension]
    except (ImportError, ValueError) as exc:
        raise SystemExit(f"localserver: cannot load --web-extension: {exc}") from None
    try:
        limits = Limits.from_args(args)
        server = LocalServer(
            *(args.data_dir, args.host, args.port, access_key, secret_key, args.task_timeout),
            limits=limits,
            extra_routes=partial(routes, extensions=extensions),
        )
    except OSError as exc:  # e.g. the port is in use
        raise SystemExit(f"localserver: cannot start on {args.host}:{args.port}: {exc}") from None
    # SIGTERM stops cleanly (uvicorn finishes the requests in flight, then raises it again here); every
    # acknowledged write is already committed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.ready_file:
        ready = {"port": server.port, "pid": os.getpid(), "access_key": server.access_key}
        ready["secret_key"] = server.secret_key
        write_private(args.ready_file, json.dumps(ready))
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
        store = open_store(Path(args.data_dir).resolve())
        access_key, secret_key = load_or_create_credentials(store, None, None)
        store.close()
    api_url = f"http://{args.host}:{args.port}"
    config_file = write_client_config(args.write, api_url, access_key, secret_key) if args.write else None
    for key, value in client_env(api_url, access_key, secret_key, config_file and config_file.resolve()).items():
        print(f"export {key}={shlex.quote(value)}")


PASSWORD_ENV = "LOCALSERVER_PASSWORD"


def _password(args) -> str:
    """From --password-file, else LOCALSERVER_PASSWORD, else typed twice at a prompt: never from argv."""
    if args.password_file:
        try:
            return Path(args.password_file).read_text().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"localserver: cannot read --password-file: {exc}") from None
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise SystemExit(f"localserver: no password: give --password-file or {PASSWORD_ENV}, or run in a terminal")
    password = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != password:
        raise SystemExit("localserver: the passwords differ; nothing changed")
    return password


def manage_users(args) -> None:
    store = open_store(Path(args.data_dir).resolve())
    try:
        with store.transaction():
            if args.action == "list":
                for user in store.users():
                    pairs = len(store.credentials_of(user["id"]))
                    sign_in = "password" if user["password_hash"] else "keys only"
                    fields = (user["name"], user["role"], user["id"], user["created"], sign_in, f"{pairs} key pairs")
                    print("\t".join(fields))
                return
            if args.action == "add":
                user = users.add_user(store, args.name, _password(args))
                print(f"localserver: added {user['name']} (id {user['id']})")
            elif args.action == "passwd":
                user = users.set_password(store, args.name, _password(args))
                print(f"localserver: new password for {user['name']}; their web UI sessions ended")
            else:
                user = users.remove_user(store, args.name)
                print(f"localserver: removed {user['name']}; their key pairs, tokens and sessions no longer work")
    except users.UserError as exc:
        raise SystemExit(f"localserver: {exc}") from None
    finally:
        store.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localserver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("serve", serve, "run the API server and fileserver"),
        ("config", config, "print CLEARML_* exports for clients (and optionally write a clearml.conf)"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(func=func)
        sub.add_argument("--data-dir", required=True, help="SQLite database and files folder (made private: 0700)")
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8008, help="0 picks a free port (serve)")
        sub.add_argument("--access-key", help="default: CLEARML_API_ACCESS_KEY, else the data dir's keys")
        secret = sub.add_mutually_exclusive_group()
        secret.add_argument("--secret-key-file", help="file holding the secret key (default: CLEARML_API_SECRET_KEY)")
        secret.add_argument("--secret-key", help="for tests only: argv is visible to every user (prints a warning)")
    serve_parser = commands.choices["serve"]
    serve_parser.add_argument("--ready-file", help="write {port, pid, keys} here (0600) once listening")
    serve_parser.add_argument("--log-level", default="info")
    serve_parser.add_argument(
        "--web-extension",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="add the pages of this localserver.webui.WebExtension to the web UI (repeatable)",
    )
    serve_parser.add_argument(
        "--task-timeout",
        type=float,
        help="seconds without a sign of life after which an in_progress task is marked failed "
        "(default: LOCALSERVER_TASK_TIMEOUT_SEC, else 7200, as clearml-server)",
    )
    Limits.add_arguments(serve_parser)
    commands.choices["config"].add_argument("--write", metavar="CLEARML_CONF", help="also write a clearml.conf")
    users_parser = commands.add_parser("users", help="add, list, remove users or set a password (the administrator)")
    users_parser.set_defaults(func=manage_users)
    actions = users_parser.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("add", "add a user who signs in to the web UI with NAME and a password"),
        ("list", "list the active users"),
        ("passwd", "set a user's password (the administrator's is 'admin'); ends their web UI sessions"),
        ("remove", "remove a user: their key pairs, tokens and sessions stop working at once"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("--data-dir", required=True, help="the server's data dir (it may be running)")
        if action != "list":
            sub.add_argument("name", metavar="NAME")
        if action in ("add", "passwd"):
            sub.add_argument(
                "--password-file", help=f"file holding the password (default: {PASSWORD_ENV}, else a prompt)"
            )
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

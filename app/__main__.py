"""`python -m app`: serve the production model with a Gradio UI, collect feedback, publish it as dataset versions.

ClearML connection settings come from the usual places (clearml.conf or CLEARML_* variables). Setting
APP_USERNAME and APP_PASSWORD in the environment puts the UI and its API behind a login. The UI is served at
/, the REST API at /api/v1/ (OpenAPI at /api/v1/openapi.json), both by one process on one port.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Mapping

from app.application import Login, create_app
from app.config import parse_args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    login = login_from_env(os.environ)  # the one place the login is read
    check_binding(config.host, login, config.insecure)
    with create_app(config, login) as app:  # uvicorn's startup starts it, its shutdown (Ctrl-C, SIGTERM) closes it
        server = app.serve()
    if not server.accepted_requests:
        raise SystemExit("error: the app did not start; see the log above")


def login_from_env(environ: Mapping[str, str]) -> Login | None:
    username, password = environ.get("APP_USERNAME"), environ.get("APP_PASSWORD")
    return (username, password) if username and password else None


def check_binding(host: str, login: Login | None, insecure: bool) -> None:
    """Refuse to listen beyond this machine without a login, unless told `--insecure`."""
    if login is not None or insecure or is_loopback(host):
        return
    raise SystemExit(
        f"Refusing to serve on {host!r} without a login: anyone who can reach it could publish data. Set "
        "APP_USERNAME and APP_PASSWORD, bind 127.0.0.1, or pass --insecure."
    )


def is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


if __name__ == "__main__":
    main()

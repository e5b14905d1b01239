"""The server's limits on what clients may cost it, each a ``serve`` option (``python -m localserver serve -h``)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    max_json_body_mb: int = 64
    max_upload_mb: int = 8192
    login_failures_per_minute: int = 20

    def __post_init__(self):
        for field in fields(self):
            if not _is_positive(getattr(self, field.name)):
                raise ValueError(f"{_option(field.name)} must be a positive number, got {getattr(self, field.name)!r}")

    @property
    def max_json_body(self) -> int:
        return self.max_json_body_mb * MB

    @property
    def max_upload(self) -> int:
        return self.max_upload_mb * MB

    def as_argv(self) -> list[str]:
        """The ``serve`` options that set these limits."""
        return [arg for field in fields(self) for arg in (_option(field.name), str(getattr(self, field.name)))]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("limits")
        for field in fields(cls):
            group.add_argument(
                _option(field.name),
                type=_positive(type(field.default)),
                default=field.default,
                help=f"{_HELP[field.name]} (default {field.default})",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Limits:
        return cls(**{field.name: getattr(args, field.name) for field in fields(cls)})


_HELP = {
    "header_timeout": "seconds a connection may take from connecting to the end of its request headers; "
    "a connection still sending headers after that is closed",
    "body_timeout": "seconds a request body may pause without sending a byte; the request is answered 408",
    "max_connections": "open connections at most; beyond it the oldest connection that has not finished its "
    "headers is closed to make room, and if every connection is busy with a request the new one is closed "
    "(clients retry a closed connection; a 503 would make the SDK wait for 'maintenance')",
    "max_json_body_mb": "largest API request body in MiB, answered 413 beyond (the SDK splits "
    "events.add_batch at 15 MiB)",
    "max_upload_mb": "largest fileserver upload (the whole multipart body) in MiB, answered 413 beyond",
    "login_failures_per_minute": "auth.login attempts with wrong keys per client address and minute; beyond it "
    "logins from that address are answered 429 with Retry-After until the allowance refills",
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if not _is_positive(value):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _is_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0

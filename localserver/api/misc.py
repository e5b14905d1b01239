"""server.*, users.get_vaults, debug.*: the small endpoints some clients call."""

from __future__ import annotations

from .. import SERVER_VERSION
from . import Context, endpoint


@endpoint("server.info", read_only=True)
def info(ctx: Context, body: dict) -> dict:
    return {"version": SERVER_VERSION, "build": "localserver", "commit": "", "api_version": "2.31"}


@endpoint("users.get_vaults", read_only=True)
def get_vaults(ctx: Context, body: dict) -> dict:
    return {"enabled": False, "vaults": []}


@endpoint("debug.ping", "debug.echo", read_only=True)
def ping(ctx: Context, body: dict) -> dict:
    return {"msg": "ClearML server"}

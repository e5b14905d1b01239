"""server.*, users.*, debug.*: the small identity endpoints some clients call."""

from __future__ import annotations

from .. import SERVER_VERSION
from . import Context, endpoint


@endpoint("server.info", read_only=True)
def info(ctx: Context, body: dict) -> dict:
    return {"version": SERVER_VERSION, "build": "localserver", "commit": "", "api_version": "2.31"}


@endpoint("users.get_current_user", read_only=True)
def get_current_user(ctx: Context, body: dict) -> dict:
    user = {"id": ctx.user, "name": ctx.user, "company": {"id": "", "name": ""}, "role": "admin"}
    return {"user": user, "getting_started": {}, "settings": {}}


@endpoint("users.get_all", "users.get_all_ex", read_only=True)
def get_all_users(ctx: Context, body: dict) -> dict:
    return {"users": [{"id": ctx.user, "name": ctx.user}]}


@endpoint("users.get_vaults", read_only=True)
def get_vaults(ctx: Context, body: dict) -> dict:
    return {"enabled": False, "vaults": []}


@endpoint("debug.ping", "debug.echo", read_only=True)
def ping(ctx: Context, body: dict) -> dict:
    return {"msg": "ClearML server"}

"""users.* and the key pair endpoints auth.create/get/edit/revoke_credentials, shaped as the SDK's request
classes (``clearml.backend_api.services.v2_23.auth``) declare them. A user manages their own key pairs only;
users are managed by the administrator, with ``python -m localserver users`` (which needs the data dir)."""

from __future__ import annotations

from .. import users
from ..errors import bad_request, missing_field
from . import Context, endpoint, id_list


def _public(user: dict) -> dict:
    """What any signed-in user may read of a user: never the password hash or the session epoch."""
    shown = {"id": user["id"], "name": user["name"], "role": user["role"], "created": user["created"]}
    shown.update(company={"id": "", "name": ""}, given_name=user["name"], family_name="")
    if user["removed"]:
        shown["removed"] = user["removed"]
    return shown


@endpoint("users.get_current_user", read_only=True)
def get_current_user(ctx: Context, body: dict) -> dict:
    user = ctx.store.user(ctx.user)
    if user is None:  # a context the server made for itself (the watchdog)
        user = {"id": ctx.user, "name": ctx.user, "role": "admin", "created": "", "removed": None}
    return {"user": _public(user), "getting_started": {}, "settings": {}}


@endpoint("users.get_all", "users.get_all_ex", read_only=True)
def get_all_users(ctx: Context, body: dict) -> dict:
    """Every user, removed ones included (what they created still names them); ``id`` and ``name`` filter."""
    ids = set(id_list(body.get("id")))
    names = {name.lower() for name in id_list(body.get("name"))}
    found = ctx.store.users(include_removed=True)
    found = [u for u in found if (not ids or u["id"] in ids) and (not names or u["name"].lower() in names)]
    return {"users": [_public(user) for user in found]}


@endpoint("auth.create_credentials")
def create_credentials(ctx: Context, body: dict) -> dict:
    try:
        created = users.create_credentials(ctx.store, ctx.user, body.get("label"))
    except users.UserError as exc:
        raise bad_request(str(exc)) from None
    return {"credentials": created}


@endpoint("auth.get_credentials", read_only=True)
def get_credentials(ctx: Context, body: dict) -> dict:
    """The caller's key pairs, secrets left empty (as the SDK's CredentialKey has them)."""
    fields = ("access_key", "label", "last_used", "last_used_from")
    found = [{name: pair[name] for name in fields} | {"created": pair["created"]} for pair in _own(ctx)]
    return {"credentials": found}


@endpoint("auth.edit_credentials")
def edit_credentials(ctx: Context, body: dict) -> dict:
    access_key = _own_key(ctx, body)
    try:
        label = users.check_label(body.get("label"))
    except users.UserError as exc:
        raise bad_request(str(exc)) from None
    return {"updated": ctx.store.set_credential_label(ctx.user, access_key, label)}


@endpoint("auth.revoke_credentials")
def revoke_credentials(ctx: Context, body: dict) -> dict:
    """Revoke one of the caller's key pairs; its tokens stop working at their next request."""
    return {"revoked": ctx.store.delete_credential(ctx.user, _own_key(ctx, body))}


def _own(ctx: Context) -> list[dict]:
    return ctx.store.credentials_of(ctx.user)


def _own_key(ctx: Context, body: dict) -> str:
    """``access_key`` of the body when it is one of the caller's key pairs; another user's key is answered as an
    unknown one, so keys cannot be probed."""
    access_key = body.get("access_key") or body.get("key_id")  # the SDK's schema requires "key_id"
    if not access_key:
        raise missing_field("access_key")
    if access_key == ctx.server.access_key:
        raise bad_request("The server's own keys are set when it starts (python -m localserver serve --access-key)")
    if not isinstance(access_key, str) or access_key not in {pair["access_key"] for pair in _own(ctx)}:
        raise bad_request(f"No key pair of yours has the access key {str(access_key)[:40]!r}")
    return access_key

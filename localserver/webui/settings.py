"""Settings → Workspace: the signed-in user's API key pairs: create one (its secret shown once, with a ready
``clearml.conf``), relabel the list, revoke one. Every action is the ``auth.*_credentials`` call of the SDK."""

from __future__ import annotations

from starlette.routing import Route

from .. import users
from ..clientconfig import client_config_text
from .core import View, WebUI, text_field

NO_STORE = {"Cache-Control": "no-store"}  # the page that shows a new secret must not be kept by the browser


def workspace_page(view: View, created: dict | None = None, status_code: int = 200):
    pairs = view.api("auth.get_credentials", {})["credentials"]
    me = view.api("users.get_current_user", {})["user"]
    config = client_config_text(view.ui.server.api_url, created["access_key"], created["secret_key"]) if created else ""
    response = view.render(
        "settings_workspace.html", status_code=status_code, pairs=pairs, me=me, created=created, config=config
    )
    response.headers.update(NO_STORE)
    return response


def create_pair(view: View):
    label = text_field(view.form, "label", "Label", required=False, max_chars=users.MAX_LABEL_CHARS)
    created = view.api("auth.create_credentials", {"label": label})["credentials"]
    return workspace_page(view, created)


def revoke_pair(view: View):
    view.api("auth.revoke_credentials", {"access_key": text_field(view.form, "access_key", "Access key")})
    return view.redirect("/settings/workspace")


def routes(ui: WebUI) -> list[Route]:
    return [
        Route("/settings", ui.page(lambda view: view.redirect("/settings/workspace"))),
        Route("/settings/workspace", ui.page(workspace_page)),
        Route("/settings/workspace/create", ui.page(create_pair), methods=["POST"]),
        Route("/settings/workspace/revoke", ui.page(revoke_pair), methods=["POST"]),
    ]

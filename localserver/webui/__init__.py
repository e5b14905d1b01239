"""The web UI of the embedded server: server-rendered pages over the same API the SDK calls.

``routes(server)`` gives the Starlette routes for a :class:`localserver.LocalServer`; the HTTP app appends them
after the API and ``/files`` routes, so the links the SDK prints (``web_server`` is the API's own address) land
here: ``/projects/<project>/tasks/<task>/<tab>`` (and ``/experiments/``), ``/datasets/simple/<project>/
experiments/<task>``, ``/pipelines/<project>/experiments/<task>``, ``/models/<id>``.

Every read and every action is an API call (:func:`localserver.api.call`) as the signed-in user, so a button
does exactly what the SDK call of the same name does. Sign-in takes a user name and password (``python -m
localserver users``), or an access key and secret key (the server's, the administrator's; or a user's key pair
from Settings → Workspace). The session is an HMAC-signed cookie (HttpOnly, SameSite=Lax) keyed from the
server's keys, so rotating them signs every browser out; it ends at once when its user is removed, changes
password, or revokes the key pair it signed in with. Every POST form carries the session's CSRF token. Charts
use plotly.js from the ``plotly`` wheel.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .. import users
from ..errors import ApiError
from . import datasets, files, models, orchestration, pipelines, settings, tasks
from .core import HERE, NotFound, View, WebExtension, WebUI, safe_next, text_field

__all__ = ["WebExtension", "WebUI", "load_extension", "routes"]


def plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


def login_page(view: View):
    """Sign in with a user name and password, or with an access key and its secret key."""
    if view.request.method == "GET":
        return view.render("login.html", next=safe_next(view.query.get("next")), error="", name="")
    name = text_field(view.form, "name", "User name", required=False, max_chars=100)
    password = text_field(view.form, "password", "Password", required=False, max_chars=users.MAX_PASSWORD_CHARS)
    access_key = text_field(view.form, "access_key", "Access key", required=False)
    secret_key = text_field(view.form, "secret_key", "Secret key", required=False)
    target = safe_next(view.form.get("next") if isinstance(view.form.get("next"), str) else None)
    account = f"user:{name.lower()}" if name else f"key:{access_key}"
    # Guesses count against the same per-address budget as the API's auth.login, and against the account's own.
    throttle = view.ui.server.login_throttle
    address = view.request.client.host if view.request.client else ""
    throttle.check(address)
    throttle.check(account)
    session = _signed_in_session(view, name, password, access_key, secret_key)
    if session is None:
        given = bool(name or password or access_key or secret_key)
        if given:
            throttle.failed(address)
            throttle.failed(account)
        error = "Wrong user name or password." if name else "Wrong access key or secret key."
        error = error if given else "Enter a user name and password, or an access key and secret key."
        return view.render("login.html", status_code=401, next=target, error=error, name=name)
    response = view.redirect(target)
    view.ui.set_session_cookie(response, session)
    return response


def _signed_in_session(view: View, name: str, password: str, access_key: str, secret_key: str) -> dict | None:
    server = view.ui.server
    if name:
        with server.store.read() as store:
            user = users.sign_in(store, name, password)
        return view.ui.new_session(user) if user else None
    if not access_key:
        return None
    try:
        user_id, _ = server.auth.check_pair(access_key, secret_key)
    except ApiError:
        return None
    with server.store.read() as store:
        return view.ui.new_session(store.user(user_id), access_key)


def logout(view: View):
    response = view.redirect("/login")
    view.ui.set_session_cookie(response, None)
    return response


def not_found(view: View):
    raise NotFound(f"No page at {view.request.url.path}.")


def load_extension(spec: str) -> WebExtension:
    """The :class:`WebExtension` named ``module:attribute`` (``python -m localserver serve --web-extension``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a web extension is named module:attribute, not {spec!r}")
    extension = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(extension, WebExtension):
        raise ValueError(f"{spec} is not a localserver.webui.WebExtension")
    return extension


def routes(server, extensions: Sequence[WebExtension] = ()) -> list[BaseRoute]:
    """The web UI's routes for ``server``, with the pages of ``extensions`` before the catch-all 404."""
    ui = WebUI(server, extensions)
    js = plotly_js()
    return [
        Route("/login", ui.page(login_page, public=True), methods=["GET", "POST"]),
        Route("/logout", ui.page(logout), methods=["POST"]),
        Route("/_ui/plotly.min.js", lambda request: FileResponse(js, media_type="text/javascript")),
        Mount("/_ui/static", StaticFiles(directory=HERE / "static"), name="webui-static"),
        *tasks.routes(ui),
        *models.routes(ui),
        *datasets.routes(ui),
        *pipelines.routes(ui),
        *orchestration.routes(ui),
        *settings.routes(ui),
        *files.routes(ui),
        *(route for extension in extensions for route in extension.routes(ui)),
        Route("/{path:path}", ui.page(not_found)),
    ]

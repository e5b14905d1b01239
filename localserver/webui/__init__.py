"""The web UI of the embedded server: server-rendered pages over the same API the SDK calls.

``routes(server)`` gives the Starlette routes for a :class:`localserver.LocalServer`; the HTTP app appends them
after the API and ``/files`` routes, so the links the SDK prints (``web_server`` is the API's own address) land
here: ``/projects/<project>/tasks/<task>/<tab>`` (and ``/experiments/``), ``/datasets/simple/<project>/
experiments/<task>``, ``/pipelines/<project>/experiments/<task>``, ``/models/<id>``.

Every read and every action is an API call (:func:`localserver.api.call`) as the signed-in user, so a button
does exactly what the SDK call of the same name does. Sign-in takes the server's access key and secret key; the
session is an HMAC-signed cookie (HttpOnly, SameSite=Lax) keyed from those keys, so rotating them signs every
browser out; every POST form carries the session's CSRF token. Charts use plotly.js from the ``plotly`` wheel.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import registry, tasks
from .core import HERE, NotFound, View, WebUI, safe_next, text_field


def plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


def login_page(view: View):
    if view.request.method == "GET":
        return view.render("login.html", next=safe_next(view.query.get("next")), error="")
    access_key = text_field(view.form, "access_key", "Access key", required=False)
    secret_key = text_field(view.form, "secret_key", "Secret key", required=False)
    target = safe_next(view.form.get("next") if isinstance(view.form.get("next"), str) else None)
    # Guesses here count against the same per-address budget as the API's auth.login.
    throttle = view.ui.server.login_throttle
    address = view.request.client.host if view.request.client else ""
    throttle.check(address)
    if not view.ui.credentials_valid(access_key, secret_key):
        if access_key or secret_key:
            throttle.failed(address)
        error = "Wrong access key or secret key." if access_key or secret_key else "Enter the server's keys."
        return view.render("login.html", status_code=401, next=target, error=error)
    response = view.redirect(target)
    view.ui.set_session_cookie(response, view.ui.new_session())
    return response


def logout(view: View):
    response = view.redirect("/login")
    view.ui.set_session_cookie(response, None)
    return response


def not_found(view: View):
    raise NotFound(f"No page at {view.request.url.path}.")


def routes(server) -> list[BaseRoute]:
    ui = WebUI(server)
    js = plotly_js()
    return [
        Route("/login", ui.page(login_page, public=True), methods=["GET", "POST"]),
        Route("/logout", ui.page(logout), methods=["POST"]),
        Route("/_ui/plotly.min.js", lambda request: FileResponse(js, media_type="text/javascript")),
        Mount("/_ui/static", StaticFiles(directory=HERE / "static"), name="webui-static"),
        *tasks.routes(ui),
        *registry.routes(ui),
        Route("/{path:path}", ui.page(not_found)),
    ]

"""What every page shares: the signed session cookie, CSRF, API calls as the signed-in user, templates, errors.

A page is a plain function ``(view: View) -> Response`` wrapped by :meth:`WebUI.page`, which signs the user in
(or redirects to ``/login?next=...``), checks the CSRF token of a POST, parses the form and runs the function in a
worker thread (the API and the store are synchronous). An :class:`~localserver.errors.ApiError` is shown with
the API's message; :class:`NotFound` is a 404 page; :class:`Invalid` a form message: never a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .. import api
from ..errors import ApiError

log = logging.getLogger("localserver.webui")

HERE = Path(__file__).parent
COOKIE = "localserver_ui"
SESSION_SECONDS = 7 * 24 * 3600
MAX_FORM_BYTES = 1024 * 1024
MAX_FIELD_CHARS = 10_000
# Pages with action forms must not be framed by another site (clickjacking). Script only from this server's
# files, never inline (what a client stored cannot run even if it reached the markup). 'unsafe-eval' because
# plotly's WebGL charts (scattergl, for long scalar series) compile their shaders with `new Function`; without it
# they show "WebGL is not supported". It lets only scripts that already run evaluate strings, and no stored value
# is ever passed to them as code. Styles inline too, as plotly sets them; images also from http(s) hosts, where
# clients' debug samples may live.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' http: https: data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


class NotFound(Exception):
    """Answered with the 404 page."""


class Invalid(Exception):
    """A form or query value that cannot be used; answered 400 with the message."""


@dataclass
class View:
    """One request as a page function sees it."""

    ui: WebUI
    request: Request
    session: dict
    form: dict = field(default_factory=dict)

    @property
    def path(self) -> dict:
        return self.request.path_params

    @property
    def query(self):
        return self.request.query_params

    @property
    def user(self) -> str:
        """The signed-in user's id."""
        return self.session["user"]

    def api(self, name: str, body: dict) -> dict:
        return self.ui.api(name, body, self.user)

    def render(self, template: str, status_code: int = 200, **context) -> HTMLResponse:
        return self.ui.render(template, self, status_code=status_code, **context)

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)


@dataclass(frozen=True)
class WebExtension:
    """Pages another package adds to the web UI, on the same sign-in, CSRF and API calls as its own: ``routes(ui)``
    gives their Starlette routes, ``templates`` is the folder of their templates (which extend ``base.html``), and
    ``nav`` the ``(path, label)`` links they add to the top bar. ``python -m localserver serve --web-extension
    module:name`` loads one; the server names nothing of what it adds."""

    routes: Callable[[WebUI], list]
    templates: Path | None = None
    nav: tuple[tuple[str, str], ...] = ()


class WebUI:
    def __init__(self, server, extensions: Sequence[WebExtension] = ()):
        self.server = server
        self.extensions = tuple(extensions)
        folders = [HERE / "templates", *(e.templates for e in self.extensions if e.templates is not None)]
        self.templates = Environment(
            loader=ChoiceLoader([FileSystemLoader(folder) for folder in folders]),
            autoescape=select_autoescape(["html"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(when=format_time, size=format_size, short=short_id, value=format_value)
        self.templates.globals.update(quote=quote, urlencode=urlencode, task_url=task_url, file_link=file_link)
        self.templates.globals["extension_nav"] = [link for e in self.extensions for link in e.nav]

    # API
    def api(self, name: str, body: dict, user: str) -> dict:
        """Run an endpoint as ``user``, exactly as the SDK's request of the same name would."""
        return api.call(self.server, name, body, user)

    # session
    def _signing_key(self) -> bytes:
        # Derived from the server's keys: rotating them signs every browser out.
        auth = self.server.auth
        return hmac.new(auth.secret_key.encode(), f"webui-session:{auth.access_key}".encode(), "sha256").digest()

    def sign(self, payload: dict) -> str:
        data = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
        mac = hmac.new(self._signing_key(), data.encode(), hashlib.sha256).hexdigest()
        return f"{data}.{mac}"

    def unsign(self, value: str | None) -> dict | None:
        if not value or "." not in value or len(value) > 4096:
            return None
        data, _, mac = value.rpartition(".")
        expected = hmac.new(self._signing_key(), data.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(data.encode()))
        except ValueError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) or payload["exp"] < time.time():
            return None
        return payload if isinstance(payload.get("csrf"), str) else None

    def new_session(self, user: dict, access_key: str | None = None) -> dict:
        """A session of ``user`` (a users row) signed in by password, or by ``access_key`` and its secret."""
        session = {"exp": int(time.time()) + SESSION_SECONDS, "csrf": secrets.token_urlsafe(24)}
        session.update(user=user["id"], name=user["name"], epoch=user["session_epoch"])
        return session | ({"key": access_key} if access_key else {})

    def session_live(self, session: dict) -> bool:
        """Whether a signed session's user is still active at the same epoch (no password change or removal
        since) and, for a key pair sign-in, the pair is not revoked: checked on every request."""
        user, epoch, key = session.get("user"), session.get("epoch"), session.get("key")
        if not isinstance(user, str) or not isinstance(epoch, int) or not isinstance(session.get("name"), str):
            return False
        if key is not None and not (isinstance(key, str) and self.server.auth.pair_active(user, key)):
            return False
        return self.server.store.active_session_epoch(user) == epoch

    def set_session_cookie(self, response: Response, session: dict | None) -> None:
        if session is None:
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
        else:
            response.set_cookie(
                COOKIE, self.sign(session), max_age=SESSION_SECONDS, path="/", httponly=True, samesite="lax"
            )

    # rendering
    def render(self, template: str, view: View | None, status_code: int = 200, **context) -> HTMLResponse:
        context.setdefault("csrf", view.session.get("csrf") if view and view.session else "")
        context.setdefault("signed_in", bool(view and view.session))
        context.setdefault("user_name", view.session.get("name", "") if view and view.session else "")
        context.setdefault("current_path", view.request.url.path if view else "/")
        html = self.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

    def error_page(self, view: View | None, status_code: int, title: str, message: str) -> HTMLResponse:
        return self.render("error.html", view, status_code=status_code, title=title, message=message)

    # page wrapper
    def page(self, func, methods=("GET",), public: bool = False):
        """A Starlette endpoint running ``func(view)`` for a signed-in user (see the module docstring)."""

        async def endpoint(request: Request) -> Response:
            session = self.unsign(request.cookies.get(COOKIE))
            if session is not None and not self.session_live(session):
                session = None
            view = View(self, request, session or {})
            if session is None and not public:
                if request.method != "GET" or request.url.path.startswith("/_ui/"):
                    return self.error_page(view, 401, "Sign-in required", "Sign in to continue.")
                return RedirectResponse(f"/login?{urlencode({'next': local_next(request)})}", status_code=303)
            if request.method == "POST":
                try:
                    view.form = await read_form(request)
                except Invalid as exc:
                    return self.error_page(view, 400, "Invalid form", str(exc))
                if not public and not hmac.compare_digest(str(view.form.get("csrf", "")), session["csrf"]):
                    return self.error_page(view, 403, "Refused", "The form's CSRF token is missing or wrong.")
            try:
                return await run_in_threadpool(func, view)
            except NotFound as exc:
                return self.error_page(view, 404, "Not found", str(exc) or "No such page.")
            except Invalid as exc:
                return self.error_page(view, 400, "Invalid input", str(exc))
            except ApiError as exc:
                # An unknown id in a page's address is a 404; in a form, the form's error.
                missing = request.method == "GET" and is_unknown_id(exc)
                status = 404 if missing else (exc.code if exc.code in (401, 403, 429) else 400)
                return self.error_page(view, status, "Refused by the server", exc.msg)
            except Exception as exc:  # noqa: BLE001 - a page never answers with a traceback
                log.error("web UI error on %s: %s\n%s", request.url.path, exc, traceback.format_exc())
                return self.error_page(view, 500, "Internal error", f"{type(exc).__name__}: {exc}")

        endpoint.__name__ = func.__name__
        return endpoint


async def read_form(request: Request) -> dict:
    length = request.headers.get("content-length")
    if length and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise Invalid("The form is too large.")
    try:
        form = await request.form(max_files=0, max_fields=500, max_part_size=MAX_FORM_BYTES)
    except Exception as exc:  # noqa: BLE001 - a malformed body is a form error
        raise Invalid(f"The form could not be read: {exc}") from None
    values: dict = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            raise Invalid("File uploads are not accepted here.")
        if len(value) > MAX_FIELD_CHARS:
            raise Invalid(f"The field {key!r} is longer than {MAX_FIELD_CHARS} characters.")
        if key in values:
            values[key] = [*values[key], value] if isinstance(values[key], list) else [values[key], value]
        else:
            values[key] = value
    return values


def local_next(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def safe_next(value: str | None) -> str:
    """Only a path on this server: no scheme, no host, no ``//host`` or ``/\\host`` tricks."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    if any(ord(ch) < 32 for ch in value):
        return "/"
    return value


def is_unknown_id(exc: ApiError) -> bool:
    return exc.subcode in (101, 201, 401, 403, 701)


def files_path(uri: str | None) -> str | None:
    """The object path of a fileserver URL (``.../files/<path>``), or ``None`` for storage elsewhere."""
    if not uri:
        return None
    try:
        path = urlsplit(uri).path
    except ValueError:  # e.g. "http://[x": a client stored it, the page that shows it must not fail
        return None
    return path[len("/files/") :] if path.startswith("/files/") else None


LINKED_SCHEMES = ("http", "https")


def file_link(uri: str | None) -> str:
    """Where a browser downloads ``uri``: our session-checked proxy for fileserver objects, an http(s) URL as it
    is, else "" (templates then show the URI as text). Clients store these URIs: a ``javascript:`` or ``data:``
    one must never become a link or an image source in the web UI's origin."""
    path = files_path(uri)
    if path:
        return f"/_ui/files/{path}"
    if not uri or uri != uri.strip() or any(ord(char) < 32 or ord(char) == 127 for char in uri):
        return ""  # browsers drop such characters and would read a scheme this check never saw
    try:
        parts = urlsplit(uri)
    except ValueError:
        return ""
    return uri if parts.scheme.lower() in LINKED_SCHEMES and parts.netloc else ""


def task_url(task: dict, tab: str = "execution") -> str:
    return f"/projects/{task.get('project') or '*'}/tasks/{task['id']}/{tab}"


def format_time(value) -> str:
    if not value:
        return ""
    if isinstance(value, (int, float)):
        stamp = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=timezone.utc)
    else:
        try:
            stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_size(value) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def short_id(value) -> str:
    return str(value or "")[:8]


def choice(value: str | None, allowed, default, what: str):
    """``value`` if it is one of ``allowed``; the default when absent; :class:`Invalid` otherwise."""
    if value in (None, ""):
        return default
    if value not in allowed:
        raise Invalid(f"Unknown {what}: {value!r} (one of: {', '.join(map(str, allowed))}).")
    return value


def bounded_int(value: str | None, low: int, high: int, default: int, what: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise Invalid(f"{what} must be a whole number, not {value!r}.") from None
    if not low <= number <= high:
        raise Invalid(f"{what} must be between {low} and {high}.")
    return number


def text_field(form: dict, name: str, what: str, required: bool = True, max_chars: int = 500) -> str:
    value = form.get(name)
    if isinstance(value, list):
        raise Invalid(f"{what} was given more than once.")
    value = (value or "").strip()
    if required and not value:
        raise Invalid(f"{what} is required.")
    if len(value) > max_chars:
        raise Invalid(f"{what} is longer than {max_chars} characters.")
    return value

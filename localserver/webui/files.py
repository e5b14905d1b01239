"""The fileserver's objects for a signed-in browser, and the small JSON objects (dataset states) pages read."""

from __future__ import annotations

import json

from starlette.responses import FileResponse
from starlette.routing import Route

from ..errors import ApiError
from .core import Invalid, NotFound, View, WebUI, files_path

MAX_STATE_BYTES = 64 * 1024 * 1024


def file_proxy(view: View):
    """A fileserver object (``/files`` itself wants the API's Bearer token, a browser has the session cookie)."""
    try:
        target = view.ui.server.files.resolve(view.path["path"])
    except ApiError as exc:
        raise Invalid(exc.msg) from None
    if not target.is_file():
        raise NotFound(f"No file {view.path['path']!r}.")
    return FileResponse(target)


def read_json_object(view: View, uri: str | None):
    """The JSON document at a fileserver ``uri``; ``None`` when it is elsewhere, missing, too large or not JSON."""
    path = files_path(uri)
    if not path:
        return None
    try:
        target = view.ui.server.files.resolve(path)
        if not target.is_file() or target.stat().st_size > MAX_STATE_BYTES:
            return None
        return json.loads(target.read_text())
    except (ApiError, OSError, ValueError):
        return None


def routes(ui: WebUI) -> list[Route]:
    return [Route("/_ui/files/{path:path}", ui.page(file_proxy))]

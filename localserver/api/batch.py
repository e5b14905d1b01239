"""The ``*_many`` endpoints of tasks and models: one action per id, in the request's one transaction.

An :class:`ApiError` (an unknown id, a refused status change) is the answer for that id, reported in ``failed``
as ``{"id", "error": {"codes": [code, subcode], "msg"}}`` while the other ids go on; anything else is a bug and
propagates, so the whole request is rolled back and answered 500 rather than passed off as one id's failure.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ApiError
from . import Context
from .shapes import Ids, Shape, shaped


class Batch(Shape):
    ids: Ids = []
    force: bool | None = None
    publish_tasks: bool | None = None  # models.publish_many (the SDK's name)
    publish_task: bool | None = None  # models.publish_many as this server first read it


def batch_endpoint(get: Callable[[Context, str], dict], action: Callable[[Context, dict, Batch], dict | None]):
    """A handler applying ``action(ctx, doc, request)`` to each ``get(ctx, id)``; what it returns is merged into
    the id's ``succeeded`` entry."""

    @shaped(Batch)
    def handler(ctx: Context, request: Batch) -> dict:
        succeeded, failed = [], []
        for item_id in request.ids:
            try:
                succeeded.append({"id": item_id, **(action(ctx, get(ctx, item_id), request) or {})})
            except ApiError as exc:
                failed.append({"id": item_id, "error": {"codes": [exc.code, exc.subcode], "msg": exc.msg}})
        return {"succeeded": succeeded, "failed": failed}

    return handler


def set_archived(save: Callable[[Context, dict], None], archived: bool) -> Callable[[Context, dict, object], dict]:
    """The action archiving (or restoring) one document: the ``archived`` system tag, saved with ``save``."""

    def action(ctx: Context, doc: dict, request: object = None) -> dict:
        tags = [t for t in doc.get("system_tags") or [] if t != "archived"]
        doc["system_tags"] = [*tags, "archived"] if archived else tags
        save(ctx, doc)
        return {"archived" if archived else "unarchived": True}

    return action

"""``only_fields``: Mongo-style projection of documents (includes, excludes, dotted paths)."""

from __future__ import annotations

import re
from collections.abc import Callable

PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def project(doc: dict, only_fields) -> dict:
    """Mongo projection: dotted includes keep existing parents (an empty dict when the child is absent)."""
    return projection(only_fields)(doc)


def field_names(only_fields) -> list[str]:
    values = only_fields if isinstance(only_fields, (list, tuple)) else [only_fields]
    return [f for f in values if isinstance(f, str) and f]


def projection(only_fields) -> Callable[[dict], dict]:
    """:func:`project` with ``only_fields`` parsed once, for applying to many documents."""
    fields = field_names(only_fields)
    if not fields:
        return lambda doc: doc
    if all(f.startswith("-") for f in fields):
        excluded = [f[1:].split(".") for f in fields]

        def exclude(doc: dict) -> dict:
            result = _deep_copy(doc)
            for parts in excluded:
                _remove_path(result, parts)
            return result

        return exclude
    included = [f.split(".") for f in fields if not f.startswith("-")]
    if all(len(parts) == 1 for parts in included):
        names = [parts[0] for parts in included if parts[0] != "id"]
        # documents are decoded afresh for every request: the result may share their values
        return lambda doc: {k: doc[k] for k in ("id", *names) if k in doc}

    def include(doc: dict) -> dict:
        result: dict = {"id": doc["id"]} if "id" in doc else {}
        for parts in included:
            _include_path(doc, result, parts)
        return result

    return include


def _include_path(src, dst: dict, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if not isinstance(src, dict) or head not in src:
        return
    value = src[head]
    if not rest:
        dst[head] = value
        return
    if isinstance(value, dict):
        child = dst.setdefault(head, {})
        if isinstance(child, dict):
            _include_path(value, child, rest)
    elif isinstance(value, list):
        items = dst.setdefault(head, [{} for _ in value])
        for item, out in zip(value, items, strict=False):
            if isinstance(out, dict):
                _include_path(item, out, rest)


def _remove_path(doc, parts: list[str]) -> None:
    for part in parts[:-1]:
        if not isinstance(doc, dict) or part not in doc:
            return
        doc = doc[part]
    if isinstance(doc, dict):
        doc.pop(parts[-1], None)


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def plain_fields(only_fields) -> tuple[str, ...] | None:
    """``only_fields`` but ``id`` when they are all plain top-level names the store can take out of documents
    (``()`` for the ids alone), else None."""
    fields = field_names(only_fields)
    if fields and all(PLAIN_FIELD.fullmatch(f) for f in fields):
        return tuple(f for f in fields if f != "id")
    return None

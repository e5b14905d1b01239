"""Mongo-like filtering, projection, ordering and paging of JSON documents for the ``*.get_all`` endpoints.

The semantics follow what the ClearML SDK sends (see docs in ``shared/notes/clearml-protocol.md``):
- list fields: a value or list of values; the document matches any of them. Tag fields understand the operators
  ``__$all`` / ``__$any`` (for the values that follow), ``__$not`` and a ``-`` prefix (exclusion); ``None`` is
  ignored; an empty list does not filter.
- pattern fields: case-insensitive regular-expression search.
- datetime fields: ``">ts"``, ``">=ts"``, ``"<ts"``, ``"<=ts"`` (a list is ANDed); a two-item list without
  prefixes is an inclusive range.
- range fields: ``[min, max]`` with ``None`` for an open end.
- ``_or_`` / ``_any_`` / ``_all_``: ``{"fields": [...], "pattern": str | "datetime": str | list}``.
- keys the entity does not know are ignored (the SDK sends ``method``, ``task_types``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

MISSING = object()


@dataclass(frozen=True)
class QuerySpec:
    list_fields: frozenset = frozenset()
    tag_fields: frozenset = frozenset({"tags", "system_tags"})
    pattern_fields: frozenset = frozenset()
    datetime_fields: frozenset = frozenset()
    range_fields: frozenset = frozenset()
    plain_fields: frozenset = frozenset()
    # Dotted keys under these prefixes are matched as list fields (e.g. ``hyperparams.General.lr.value``).
    dotted_prefixes: tuple = field(default=())


def get_path(doc, path: str):
    value = doc
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


def parse_datetime(value) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            text = value.strip().replace(" ", "T")
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _as_list(value) -> list:
    if value is MISSING or value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def match_list(doc_value, wanted) -> bool:
    """Tag-style matching of ``wanted`` against a scalar or list document value."""
    have = set(map(_hashable, _as_list(doc_value)))
    any_of, all_of, none_of = [], [], []
    mode, negate_next = any_of, False
    for item in _as_list(wanted):
        if item is None:
            continue
        if item == "__$all":
            mode = all_of
        elif item == "__$any":
            mode = any_of
        elif item == "__$not":
            negate_next = True
        elif negate_next:
            none_of.append(item)
            negate_next = False
        elif isinstance(item, str) and item.startswith("-") and len(item) > 1:
            none_of.append(item[1:])
        else:
            mode.append(item)
    if any(_hashable(v) in have for v in none_of):
        return False
    if not all(_hashable(v) in have for v in all_of):
        return False
    return not any_of or any(_hashable(v) in have for v in any_of)


def _hashable(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def match_pattern(doc_value, pattern) -> bool:
    if pattern is None:
        return True
    if doc_value is MISSING or doc_value is None:
        return False
    patterns = pattern if isinstance(pattern, list) else [pattern]
    try:
        return any(re.search(str(p), str(doc_value), re.IGNORECASE) for p in patterns if p is not None)
    except re.error:
        return any(str(p) in str(doc_value) for p in patterns)


_DATETIME_OPS = (
    (">=", lambda a, b: a >= b),
    ("<=", lambda a, b: a <= b),
    (">", lambda a, b: a > b),
    ("<", lambda a, b: a < b),
)


def match_datetime(doc_value, conditions) -> bool:
    conditions = _as_list(conditions)
    if not conditions:
        return True
    have = parse_datetime(doc_value)
    if have is None:
        return False
    if len(conditions) == 2 and not any(str(c)[:1] in "<>" for c in conditions if c):
        low, high = (parse_datetime(c) for c in conditions)
        return (low is None or have >= low) and (high is None or have <= high)
    for condition in conditions:
        text = str(condition)
        for prefix, compare in _DATETIME_OPS:
            if text.startswith(prefix):
                bound = parse_datetime(text[len(prefix) :])
                if bound is not None and not compare(have, bound):
                    return False
                break
        else:
            bound = parse_datetime(text)
            if bound is not None and have != bound:
                return False
    return True


def match_range(doc_value, bounds) -> bool:
    bounds = _as_list(bounds)
    if len(bounds) != 2:
        return True
    if doc_value is MISSING or doc_value is None:
        return False
    low, high = bounds
    try:
        return (low is None or doc_value >= low) and (high is None or doc_value <= high)
    except TypeError:
        return False


def _match_field(doc, key, wanted, spec: QuerySpec) -> bool | None:
    """True/False for a known field, None for a key the entity ignores."""
    if key in spec.tag_fields or key in spec.list_fields:
        return match_list(get_path(doc, key), wanted)
    if key in spec.pattern_fields:
        return match_pattern(get_path(doc, key), wanted)
    if key in spec.datetime_fields:
        return match_datetime(get_path(doc, key), wanted)
    if key in spec.range_fields or any(key.startswith(p + ".") for p in spec.range_fields):
        return match_range(get_path(doc, key), wanted)
    if key in spec.plain_fields:
        return get_path(doc, key) == wanted
    if any(key.startswith(prefix + ".") for prefix in spec.dotted_prefixes):
        return match_list(get_path(doc, key), wanted)
    return None


def _match_multi(doc, operator: str, clause, spec: QuerySpec) -> bool:
    if not isinstance(clause, dict):
        return True
    fields = _as_list(clause.get("fields"))
    if not fields:
        return True
    results = []
    for name in fields:
        if "pattern" in clause:
            results.append(match_pattern(get_path(doc, name), clause["pattern"]))
        elif "datetime" in clause:
            results.append(match_datetime(get_path(doc, name), clause["datetime"]))
        elif "value" in clause:
            results.append(match_list(get_path(doc, name), clause["value"]))
        else:
            return True
    return all(results) if operator == "_all_" else any(results)


def matches(doc: dict, query: dict, spec: QuerySpec) -> bool:
    for key, wanted in query.items():
        if key in ("_or_", "_any_", "_all_"):
            if not _match_multi(doc, key, wanted, spec):
                return False
            continue
        if wanted is None:
            continue
        if isinstance(wanted, list) and not wanted:
            continue
        if _match_field(doc, key, wanted, spec) is False:
            return False
    return True


def project(doc: dict, only_fields) -> dict:
    """Mongo projection: dotted includes keep existing parents (an empty dict when the child is absent)."""
    fields = [f for f in _as_list(only_fields) if isinstance(f, str) and f]
    if not fields:
        return doc
    if all(f.startswith("-") for f in fields):
        result = _deep_copy(doc)
        for f in fields:
            _remove_path(result, f[1:].split("."))
        return result
    result: dict = {"id": doc["id"]} if "id" in doc else {}
    for f in fields:
        if not f.startswith("-"):
            _include_path(doc, result, f.split("."))
    return result


def _include_path(src, dst: dict, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if not isinstance(src, dict) or head not in src:
        return
    value = src[head]
    if not rest:
        dst[head] = _deep_copy(value)
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


def _sort_key(value):
    # Mongo order: missing/null < numbers < strings < objects < arrays < booleans.
    if value is MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (5, value)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))


def order(docs: list[dict], order_by) -> list[dict]:
    keys = [k for k in _as_list(order_by) if isinstance(k, str) and k.strip("-+")]
    for key in reversed(keys):
        descending = key.startswith("-")
        path = key.lstrip("-+")
        docs = sorted(docs, key=lambda d, p=path: _sort_key(get_path(d, p)), reverse=descending)
    return docs


def page(docs: list, request: dict) -> list:
    size = request.get("page_size") or request.get("size")
    if not isinstance(size, int) or size <= 0:
        return docs
    number = request.get("page") if isinstance(request.get("page"), int) else 0
    start = max(number, 0) * size
    return docs[start : start + size]


def run_query(docs: list[dict], request: dict, spec: QuerySpec) -> list[dict]:
    selected = [d for d in docs if matches(d, request, spec)]
    selected = page(order(selected, request.get("order_by")), request)
    return [project(d, request.get("only_fields")) for d in selected]

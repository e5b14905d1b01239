"""Mongo-like filtering, projection, ordering and paging of JSON documents for the ``*.get_all`` endpoints.

The semantics follow what the ClearML SDK sends (see docs in ``shared/notes/clearml-protocol.md``):
- list fields: a value or list of values; the document matches any of them. Tag fields understand the operators
  ``__$all`` / ``__$any`` (for the values that follow), ``__$not`` and a ``-`` prefix (exclusion); ``None`` is
  ignored; an empty list does not filter.
- pattern fields: case-insensitive regular-expression search, within the safe subset of :func:`compile_pattern`.
- ``search_text``: a case-insensitive substring (not a pattern) of any of the entity's text fields.
- datetime fields: ``">ts"``, ``">=ts"``, ``"<ts"``, ``"<=ts"`` (a list is ANDed); a two-item list without
  prefixes is an inclusive range.
- range fields: ``[min, max]`` with ``None`` for an open end.
- ``_or_`` / ``_any_`` / ``_all_``: ``{"fields": [...], "pattern": str | "datetime": str | list}``.
- request options (paging, projection, ``search_hidden``, and keys the SDK adds such as ``method`` and
  ``task_types``) are not filters; any other key, and an ``order_by`` or ``only_fields`` path outside the
  entity's document, is refused with 400/12 "Validation error (invalid <entity> field)", as clearml-server
  answers for an invalid field path.

:func:`select` runs a request against the store: the filters, order and page that map onto the store's query
columns run in SQL; what SQL cannot express is matched here, on the already narrowed rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import ApiError, bad_request
from .patterns import MATCH_BUDGET_SEC, MAX_PATTERN_SUBJECT, compile_pattern
from .projection import plain_fields, projection

MISSING = object()

MAX_SEARCH_TEXT = 256

# Keys of a get_all request that are options, not filters: the API's own and those the SDK and agent add.
REQUEST_OPTIONS = frozenset(
    {
        "only_fields",
        "order_by",
        "page",
        "page_size",
        "size",
        "scroll_id",
        "refresh_scroll",
        "search_text",
        "search_hidden",
        "shallow_search",
        "include_subprojects",
        "include_stats",
        "allow_public",
        "max_task_entries",
        "method",
        "task_types",
        "_allow_extra_fields_",
        "_or_",
        "_any_",
        "_all_",
    }
)


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
    # The top-level fields of the entity's documents (paths in filters, order_by and only_fields must start
    # with one of them), its name in error messages, and the text fields ``search_text`` looks in.
    document_fields: frozenset = frozenset()
    entity: str = "document"
    search_fields: tuple = ("id", "name")


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


def split_operators(wanted) -> tuple[list, list, list]:
    """``(any_of, all_of, none_of)`` of a list-field filter with the tag operators applied."""
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
    return any_of, all_of, none_of


def match_list(doc_value, wanted) -> bool:
    """Tag-style matching of ``wanted`` against a scalar or list document value."""
    have = set(map(_hashable, _as_list(doc_value)))
    any_of, all_of, none_of = split_operators(wanted)
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
    subject = str(doc_value)[:MAX_PATTERN_SUBJECT]
    for item in pattern if isinstance(pattern, list) else [pattern]:
        if item is None:
            continue
        compiled = compile_pattern(str(item))
        if compiled.search(subject) is not None if compiled is not None else str(item) in subject:
            return True
    return False


def match_search_text(doc: dict, text, spec: QuerySpec) -> bool:
    """``search_text``: a case-insensitive substring of one of the entity's text fields, never a pattern."""
    if not isinstance(text, str) or not text:
        return True
    needle = text.casefold()
    return any(
        isinstance(value, str) and needle in value.casefold()
        for value in (get_path(doc, name) for name in spec.search_fields)
    )


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
        if key == "search_text":
            if not match_search_text(doc, wanted, spec):
                return False
            continue
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


def _page_window(request: dict) -> tuple[int, int] | None:
    """``(offset, size)`` of the requested page, or None for everything."""
    size = request.get("page_size") or request.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return None
    number = request.get("page") if isinstance(request.get("page"), int) else 0
    return max(number, 0) * size, size


def page(docs: list, request: dict) -> list:
    window = _page_window(request)
    return docs if window is None else docs[window[0] : window[0] + window[1]]


def run_query(docs: list[dict], request: dict, spec: QuerySpec) -> list[dict]:
    deadline = time.monotonic() + MATCH_BUDGET_SEC
    selected = []
    for index, doc in enumerate(docs):
        if index % 64 == 63 and time.monotonic() > deadline and _has_patterns(request, spec):
            raise _too_expensive()
        if matches(doc, request, spec):
            selected.append(doc)
    selected = page(order(selected, request.get("order_by")), request)
    return list(map(projection(request.get("only_fields")), selected))


def _has_patterns(request: dict, spec: QuerySpec) -> bool:
    return any(key in spec.pattern_fields or key in ("_or_", "_any_", "_all_") for key in request)


def _too_expensive() -> ApiError:
    return bad_request(f"pattern matching took longer than {MATCH_BUDGET_SEC} s; narrow the query")


# validation
def validate(request: dict, spec: QuerySpec) -> None:
    """400/12 for a filter key, ``order_by`` or ``only_fields`` path outside the entity's documents."""
    if not spec.document_fields:
        return
    paths = [key for key in request if key not in REQUEST_OPTIONS]
    paths += [k.lstrip("-+") for k in _as_list(request.get("order_by")) if isinstance(k, str) and k.strip("-+")]
    paths += [f.lstrip("-") for f in _as_list(request.get("only_fields")) if isinstance(f, str) and f.strip("-")]
    known = spec.document_fields | spec.list_fields | spec.tag_fields | spec.pattern_fields | {"id"}
    known |= spec.datetime_fields | spec.range_fields | spec.plain_fields | set(spec.dotted_prefixes)
    for path in paths:
        if path not in known and path.split(".")[0] not in known:
            raise ApiError(400, 12, f"Validation error (invalid {spec.entity} field): path={path}")
    text = request.get("search_text")
    if text is not None and (not isinstance(text, str) or len(text) > MAX_SEARCH_TEXT):
        raise bad_request(f"search_text must be a string of at most {MAX_SEARCH_TEXT} characters")


# SQL: filters, order and page on the store's query columns (localserver.store.COLUMNS)
HIDDEN_SQL = "NOT EXISTS (SELECT 1 FROM json_each(system_tags) WHERE value = 'hidden')"


@dataclass
class _Plan:
    clauses: list = field(default_factory=list)
    params: list = field(default_factory=list)
    exact: bool = True  # SQL plus column_patterns decide every filter: order and page can follow SQL
    column_patterns: list = field(default_factory=list)  # (column, pattern) matched on the column value


def _plan(request: dict, spec: QuerySpec, scalar_columns, list_columns) -> _Plan:
    plan = _Plan()
    for key, wanted in request.items():
        if key in REQUEST_OPTIONS and key not in ("_or_", "_any_", "_all_", "search_text"):
            continue
        if wanted is None or (isinstance(wanted, list) and not wanted):
            continue
        if key in spec.tag_fields and key in list_columns:
            sql = _list_sql(key, wanted, scalar=False)
        elif key in spec.list_fields and (key == "id" or key in scalar_columns):
            sql = _list_sql(key, wanted, scalar=True)
        elif key in spec.pattern_fields and key in scalar_columns:
            plan.column_patterns.append((key, wanted))
            continue
        else:
            sql = None
        if sql is None:
            plan.exact = False
        else:
            plan.clauses.append(sql[0])
            plan.params.extend(sql[1])
    return plan


def _list_sql(column: str, wanted, scalar: bool) -> tuple[str, list] | None:
    any_of, all_of, none_of = split_operators(wanted)
    if not all(isinstance(v, str) for v in (*any_of, *all_of, *none_of)):
        return None  # numbers and other values compare as in Mongo only in Python

    def contains(values: list) -> str:
        marks = ", ".join("?" * len(values))
        if scalar:
            return f"{column} IN ({marks})"
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value IN ({marks}))"

    clauses, params = [], []
    if none_of:
        clauses.append(f"({column} IS NULL OR NOT {contains(none_of)})" if scalar else f"NOT {contains(none_of)}")
        params.extend(none_of)
    for value in all_of:
        clauses.append(contains([value]))
        params.append(value)
    if any_of:
        clauses.append(contains(any_of))
        params.extend(any_of)
    return (" AND ".join(clauses) or "1", params)


def _order_sql(order_by, sortable) -> str | None:
    """ORDER BY terms when every key is a query column (NULL < numbers < text, as Mongo); None otherwise."""
    terms = []
    for key in _as_list(order_by):
        if not isinstance(key, str) or not key.strip("-+"):
            continue
        path = key.lstrip("-+")
        if path != "id" and path not in sortable:
            return None
        terms.append(f"{path} DESC" if key.startswith("-") else path)
    return ", ".join(terms)


def select(store, entity: str, request: dict, spec: QuerySpec, hide_hidden: bool = True, decorate=None) -> list:
    """Run a get_all ``request`` on ``entity``: SQL narrows (and, when it decides everything, orders and pages)
    before any document is decoded; Python matches the rest on the narrowed rows. Documents with the ``hidden``
    system tag are listed only when asked for by id or with ``search_hidden`` (when ``hide_hidden``).
    ``decorate(doc)`` adds computed fields (e.g. queue entries) before the projection."""
    from ..store import JSON_COLUMNS, SCALAR_COLUMNS

    validate(request, spec)
    plan = _plan(request, spec, SCALAR_COLUMNS, JSON_COLUMNS)
    if hide_hidden and not request.get("search_hidden") and not [i for i in _as_list(request.get("id")) if i]:
        plan.clauses.append(HIDDEN_SQL)
    where = " AND ".join(plan.clauses)
    order_sql = _order_sql(request.get("order_by"), SCALAR_COLUMNS)
    window = _page_window(request)
    in_sql = plan.exact and order_sql is not None
    if plan.column_patterns:
        columns = [column for column, _ in plan.column_patterns]
        rows = store.column_rows(entity, columns, where, plan.params, order_sql if in_sql else "")
        rowids = _match_rows(rows, plan.column_patterns)
        if in_sql and window is not None:
            rowids = rowids[window[0] : window[0] + window[1]]
        docs = store.by_rowids(entity, rowids)
    elif in_sql and window is not None:
        fields = plain_fields(request.get("only_fields")) if decorate is None else ()
        docs = store.select(entity, where, plan.params, order_sql, limit=window[1], offset=window[0], fields=fields)
    else:
        docs = store.select(entity, where, plan.params, order_sql if in_sql else "")
    if decorate is not None:
        docs = [decorate(doc) for doc in docs]
    if in_sql:
        return list(map(projection(request.get("only_fields")), docs))
    return run_query(docs, request, spec)


def _match_rows(rows: list, column_patterns: list) -> list:
    deadline = time.monotonic() + MATCH_BUDGET_SEC
    kept = []
    for index, (rowid, *values) in enumerate(rows):
        if index % 64 == 63 and time.monotonic() > deadline:
            raise _too_expensive()
        if all(match_pattern(value, pattern) for value, (_, pattern) in zip(values, column_patterns, strict=True)):
            kept.append(rowid)
    return kept

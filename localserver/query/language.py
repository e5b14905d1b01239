"""The ``*.get_all`` filter language: a request is parsed once (:func:`parse`) into a :class:`Query` of typed
conditions, which the SQL compiler (``localserver.query.sql``) and the Python matcher here both read.

The semantics follow what the ClearML SDK sends (see docs in ``shared/notes/clearml-protocol.md``):
- list fields: a value or list of values; the document matches any of them. Tag fields understand the operators
  ``__$all`` / ``__$any`` (for the values that follow), ``__$not`` and a ``-`` prefix (exclusion); ``None`` is
  ignored; an empty list does not filter.
- pattern fields: case-insensitive regular-expression search, within the safe subset of :func:`compile_pattern`.
- ``search_text``: a case-insensitive substring (not a pattern) of any of the entity's text fields.
- datetime fields: ``">ts"``, ``">=ts"``, ``"<ts"``, ``"<=ts"`` (a list is ANDed); a two-item list without
  prefixes is an inclusive range.
- range fields: ``[min, max]`` with ``None`` for an open end.
- ``_or_`` / ``_any_`` / ``_all_``: ``{"fields": [...], "pattern": str | "datetime": str | list | "value": ...}``.
- request options (paging, projection, ``search_hidden``, and keys the SDK adds such as ``method`` and
  ``task_types``) are not filters; any other key, and an ``order_by`` or ``only_fields`` path outside the
  entity's document, is refused with 400/12 "Validation error (invalid <entity> field)", as clearml-server
  answers for an invalid field path.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import ApiError, bad_request
from .patterns import MATCH_BUDGET_SEC, MAX_PATTERN_SUBJECT, compile_pattern
from .projection import projection

MISSING = object()

MAX_SEARCH_TEXT = 256

MULTI_FIELD_KEYS = ("_or_", "_any_", "_all_")

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
        *MULTI_FIELD_KEYS,
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


def _hashable(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


# conditions: each decides one filter of a request on a document
@dataclass(frozen=True)
class Members:
    """A list or tag field: any of ``any_of`` (when given), all of ``all_of``, none of ``none_of``."""

    path: str
    any_of: tuple
    all_of: tuple
    none_of: tuple

    @classmethod
    def parse(cls, path: str, wanted) -> Members:
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
        return cls(path, tuple(any_of), tuple(all_of), tuple(none_of))

    @property
    def only_strings(self) -> bool:
        return all(isinstance(v, str) for v in (*self.any_of, *self.all_of, *self.none_of))

    def matches(self, doc) -> bool:
        have = set(map(_hashable, _as_list(get_path(doc, self.path))))
        if any(_hashable(v) in have for v in self.none_of):
            return False
        if not all(_hashable(v) in have for v in self.all_of):
            return False
        return not self.any_of or any(_hashable(v) in have for v in self.any_of)


@dataclass(frozen=True)
class Pattern:
    """A text field searched for any of ``patterns`` (compiled, or a plain substring where the client's text is
    not a regular expression); no pattern at all matches nothing."""

    path: str
    patterns: tuple

    @classmethod
    def parse(cls, path: str, wanted) -> Pattern:
        items = wanted if isinstance(wanted, list) else [wanted]
        compiled = ((str(item), compile_pattern(str(item))) for item in items if item is not None)
        return cls(path, tuple(pattern if pattern is not None else text for text, pattern in compiled))

    def matches_value(self, value) -> bool:
        if value is MISSING or value is None:
            return False
        subject = str(value)[:MAX_PATTERN_SUBJECT]
        return any(
            pattern in subject if isinstance(pattern, str) else pattern.search(subject) is not None
            for pattern in self.patterns
        )

    def matches(self, doc) -> bool:
        return self.matches_value(get_path(doc, self.path))


_DATETIME_OPERATORS = ((">=", operator.ge), ("<=", operator.le), (">", operator.gt), ("<", operator.lt))


@dataclass(frozen=True)
class Dates:
    """A datetime field within every check ``(compare, bound)``; a document without a date never matches."""

    path: str
    checks: tuple

    @classmethod
    def parse(cls, path: str, conditions) -> Dates | None:
        conditions = _as_list(conditions)
        if not conditions:
            return None
        if len(conditions) == 2 and not any(str(c)[:1] in "<>" for c in conditions if c):
            low, high = (parse_datetime(c) for c in conditions)  # an inclusive range; None is an open end
            checks = [(operator.ge, low), (operator.le, high)]
        else:
            checks = [_datetime_check(str(condition)) for condition in conditions]
        return cls(path, tuple((compare, bound) for compare, bound in checks if bound is not None))

    def matches(self, doc) -> bool:
        have = parse_datetime(get_path(doc, self.path))
        return have is not None and all(compare(have, bound) for compare, bound in self.checks)


def _datetime_check(text: str) -> tuple[Callable, datetime | None]:
    for prefix, compare in _DATETIME_OPERATORS:
        if text.startswith(prefix):
            return compare, parse_datetime(text[len(prefix) :])
    return operator.eq, parse_datetime(text)  # an unreadable date checks nothing


@dataclass(frozen=True)
class Between:
    """A range field within ``[low, high]`` (None: open); a missing or incomparable value never matches."""

    path: str
    low: object
    high: object

    def matches(self, doc) -> bool:
        value = get_path(doc, self.path)
        if value is MISSING or value is None:
            return False
        try:
            return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        except TypeError:
            return False


@dataclass(frozen=True)
class Equals:
    path: str
    value: object

    def matches(self, doc) -> bool:
        return get_path(doc, self.path) == self.value


@dataclass(frozen=True)
class SearchText:
    """``search_text``: a case-insensitive substring of one of the entity's text fields, never a pattern."""

    needle: str
    fields: tuple

    def matches(self, doc) -> bool:
        values = (get_path(doc, name) for name in self.fields)
        return any(isinstance(value, str) and self.needle in value.casefold() for value in values)


@dataclass(frozen=True)
class Either:
    """``_or_``/``_any_`` (any of ``conditions``) and ``_all_`` (every one of them) over several fields."""

    conditions: tuple
    every: bool

    @classmethod
    def parse(cls, key: str, clause) -> Either | None:
        if not isinstance(clause, dict):
            return None
        fields = _as_list(clause.get("fields"))
        if "pattern" in clause:
            wanted = clause["pattern"]
            conditions = [Pattern.parse(name, wanted) if wanted is not None else None for name in fields]
        elif "datetime" in clause:
            conditions = [Dates.parse(name, clause["datetime"]) for name in fields]
        elif "value" in clause:
            conditions = [_members_or_none(Members.parse(name, clause["value"])) for name in fields]
        else:
            return None
        every = key == "_all_"
        if not fields or (not every and None in conditions):
            return None  # a field any document matches
        kept = tuple(c for c in conditions if c is not None)
        return cls(kept, every) if kept else None

    def matches(self, doc) -> bool:
        found = (condition.matches(doc) for condition in self.conditions)
        return all(found) if self.every else any(found)


def _members_or_none(members: Members) -> Members | None:
    return members if members.any_of or members.all_of or members.none_of else None


Condition = Members | Pattern | Dates | Between | Equals | SearchText | Either


def _field_condition(key: str, wanted, spec: QuerySpec) -> Condition | None:
    """The condition of one filter key, None for a key the entity ignores or a value that filters nothing."""
    if key in spec.tag_fields or key in spec.list_fields:
        return _members_or_none(Members.parse(key, wanted))
    if key in spec.pattern_fields:
        return Pattern.parse(key, wanted)
    if key in spec.datetime_fields:
        return Dates.parse(key, wanted)
    if key in spec.range_fields or any(key.startswith(p + ".") for p in spec.range_fields):
        bounds = _as_list(wanted)
        return Between(key, *bounds) if len(bounds) == 2 else None
    if key in spec.plain_fields:
        return Equals(key, wanted)
    if any(key.startswith(prefix + ".") for prefix in spec.dotted_prefixes):
        return _members_or_none(Members.parse(key, wanted))
    return None


# the parsed request
@dataclass(frozen=True)
class Query:
    conditions: tuple
    order: tuple  # (path, descending) for each order_by key
    window: tuple | None  # (offset, size) of the requested page, None for everything
    only_fields: object
    lists_hidden: bool  # asked for by id or with search_hidden: documents tagged hidden are listed too

    def matches(self, doc: dict) -> bool:
        return all(condition.matches(doc) for condition in self.conditions)

    def run(self, docs: list[dict], conditions: tuple | None = None) -> list[dict]:
        """The documents matching ``conditions`` (all of the query's by default), ordered, paged, projected.
        Pattern matching stops with a 400 once the request has used its time budget."""
        conditions = self.conditions if conditions is None else conditions
        budgeted = any(isinstance(c, (Pattern, Either)) for c in conditions)
        deadline = time.monotonic() + MATCH_BUDGET_SEC
        selected = []
        for index, doc in enumerate(docs):
            if budgeted and index % 64 == 63 and time.monotonic() > deadline:
                raise too_expensive()
            if all(condition.matches(doc) for condition in conditions):
                selected.append(doc)
        selected = self.ordered(selected)
        if self.window is not None:
            start, size = self.window
            selected = selected[start : start + size]
        return list(map(projection(self.only_fields), selected))

    def ordered(self, docs: list[dict]) -> list[dict]:
        for path, descending in reversed(self.order):
            docs = sorted(docs, key=lambda d, p=path: _sort_key(get_path(d, p)), reverse=descending)
        return docs


def parse(request: dict, spec: QuerySpec) -> Query:
    """The :class:`Query` of a get_all ``request``; 400 for a field outside the entity, a search text out of
    bounds or a pattern outside the safe subset."""
    validate(request, spec)
    conditions = []
    for key, wanted in request.items():
        if key == "search_text":
            text = wanted if isinstance(wanted, str) else ""
            condition = SearchText(text.casefold(), spec.search_fields) if text else None
        elif key in MULTI_FIELD_KEYS:
            condition = Either.parse(key, wanted)
        elif key in REQUEST_OPTIONS or wanted is None or (isinstance(wanted, list) and not wanted):
            condition = None
        else:
            condition = _field_condition(key, wanted, spec)
        if condition is not None:
            conditions.append(condition)
    order = tuple((key.lstrip("-+"), key.startswith("-")) for key in _order_keys(request.get("order_by")))
    ids = [i for i in _as_list(request.get("id")) if i]
    lists_hidden = bool(ids or request.get("search_hidden"))
    return Query(tuple(conditions), order, _page_window(request), request.get("only_fields"), lists_hidden)


def _order_keys(order_by) -> list[str]:
    return [k for k in _as_list(order_by) if isinstance(k, str) and k.strip("-+")]


def _page_window(request: dict) -> tuple[int, int] | None:
    size = request.get("page_size") or request.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return None
    number = request.get("page") if isinstance(request.get("page"), int) else 0
    return max(number, 0) * size, size


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


def run_query(docs: list[dict], request: dict, spec: QuerySpec) -> list[dict]:
    """A get_all ``request`` answered from ``docs`` in Python alone (the reference the SQL path agrees with)."""
    return parse(request, spec).run(docs)


def too_expensive() -> ApiError:
    return bad_request(f"pattern matching took longer than {MATCH_BUDGET_SEC} s; narrow the query")


def validate(request: dict, spec: QuerySpec) -> None:
    """400/12 for a filter key, ``order_by`` or ``only_fields`` path outside the entity's documents."""
    if not spec.document_fields:
        return
    paths = [key for key in request if key not in REQUEST_OPTIONS]
    paths += [k.lstrip("-+") for k in _order_keys(request.get("order_by"))]
    paths += [f.lstrip("-") for f in _as_list(request.get("only_fields")) if isinstance(f, str) and f.strip("-")]
    known = spec.document_fields | spec.list_fields | spec.tag_fields | spec.pattern_fields | {"id"}
    known |= spec.datetime_fields | spec.range_fields | spec.plain_fields | set(spec.dotted_prefixes)
    for path in paths:
        if path not in known and path.split(".")[0] not in known:
            raise ApiError(400, 12, f"Validation error (invalid {spec.entity} field): path={path}")
    text = request.get("search_text")
    if text is not None and (not isinstance(text, str) or len(text) > MAX_SEARCH_TEXT):
        raise bad_request(f"search_text must be a string of at most {MAX_SEARCH_TEXT} characters")

"""Running a get_all request against the store: the conditions of its :class:`~.language.Query` that map onto
the store's query columns (``localserver.store.COLUMNS``) compile to SQL, patterns on those columns are matched
on the column values before any document is decoded, and the Python matcher decides the rest on the narrowed
rows. When SQL decides every condition and the order, it also pages."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .language import Members, Pattern, Query, QuerySpec, parse, too_expensive
from .patterns import MATCH_BUDGET_SEC
from .projection import plain_fields, projection

HIDDEN_SQL = "NOT EXISTS (SELECT 1 FROM json_each(system_tags) WHERE value = 'hidden')"


@dataclass
class Plan:
    clauses: list = field(default_factory=list)
    params: list = field(default_factory=list)
    column_patterns: list = field(default_factory=list)  # Pattern conditions matched on their column's values
    residual: list = field(default_factory=list)  # conditions only Python decides

    @property
    def where(self) -> str:
        return " AND ".join(self.clauses)


def compile_query(query: Query, scalar_columns, list_columns, hide_hidden: bool = True) -> Plan:
    """The SQL of ``query`` over the store's scalar and JSON-array columns, and what it leaves to Python."""
    plan = Plan()
    for condition in query.conditions:
        sql = None
        if isinstance(condition, Members) and condition.only_strings:  # numbers compare as Mongo's only in Python
            if condition.path in list_columns:
                sql = _members_sql(condition, scalar=False)
            elif condition.path == "id" or condition.path in scalar_columns:
                sql = _members_sql(condition, scalar=True)
        elif isinstance(condition, Pattern) and condition.path in scalar_columns:
            plan.column_patterns.append(condition)
            continue
        if sql is None:
            plan.residual.append(condition)
        else:
            plan.clauses.append(sql[0])
            plan.params.extend(sql[1])
    if hide_hidden and not query.lists_hidden:
        plan.clauses.append(HIDDEN_SQL)
    return plan


def _members_sql(condition: Members, scalar: bool) -> tuple[str, list]:
    column = condition.path

    def contains(values) -> str:
        marks = ", ".join("?" * len(values))
        if scalar:
            return f"{column} IN ({marks})"
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value IN ({marks}))"

    clauses, params = [], []
    if condition.none_of:
        none_of = condition.none_of
        clauses.append(f"({column} IS NULL OR NOT {contains(none_of)})" if scalar else f"NOT {contains(none_of)}")
        params.extend(none_of)
    for value in condition.all_of:
        clauses.append(contains([value]))
        params.append(value)
    if condition.any_of:
        clauses.append(contains(condition.any_of))
        params.extend(condition.any_of)
    return " AND ".join(clauses) or "1", params


def order_sql(query: Query, sortable) -> str | None:
    """ORDER BY terms when every key is a query column (NULL < numbers < text, as Mongo); None otherwise."""
    if any(path != "id" and path not in sortable for path, _ in query.order):
        return None
    return ", ".join(f"{path} DESC" if descending else path for path, descending in query.order)


def select(store, entity: str, request: dict, spec: QuerySpec, hide_hidden: bool = True, decorate=None) -> list:
    """Run a get_all ``request`` on ``entity``: SQL narrows (and, when it decides everything, orders and pages)
    before any document is decoded; Python matches the rest on the narrowed rows. Documents with the ``hidden``
    system tag are listed only when asked for by id or with ``search_hidden`` (when ``hide_hidden``).
    ``decorate(doc)`` adds computed fields (e.g. queue entries) before the projection."""
    from ..store import JSON_COLUMNS, SCALAR_COLUMNS

    query = parse(request, spec)
    plan = compile_query(query, SCALAR_COLUMNS, JSON_COLUMNS, hide_hidden)
    ordering = order_sql(query, SCALAR_COLUMNS)
    in_sql = not plan.residual and ordering is not None
    window = query.window
    if plan.column_patterns:
        columns = [pattern.path for pattern in plan.column_patterns]
        rows = store.column_rows(entity, columns, plan.where, plan.params, ordering if in_sql else "")
        rowids = _match_rows(rows, plan.column_patterns)
        if in_sql and window is not None:
            rowids = rowids[window[0] : window[0] + window[1]]
        docs = store.by_rowids(entity, rowids)
    elif in_sql:
        # Plain top-level fields are taken out by SQLite: a count of ids decodes no document.
        fields = plain_fields(query.only_fields) if decorate is None else None
        limit, offset = (window[1], window[0]) if window is not None else (None, 0)
        docs = store.select(entity, plan.where, plan.params, ordering, limit=limit, offset=offset, fields=fields)
    else:
        docs = store.select(entity, plan.where, plan.params)  # Python orders what SQL could not
    if decorate is not None:
        docs = [decorate(doc) for doc in docs]
    if in_sql:
        return list(map(projection(query.only_fields), docs))
    return query.run(docs, tuple(plan.residual))


def _match_rows(rows: list, column_patterns: list) -> list:
    deadline = time.monotonic() + MATCH_BUDGET_SEC
    kept = []
    for index, (rowid, *values) in enumerate(rows):
        if index % 64 == 63 and time.monotonic() > deadline:
            raise too_expensive()
        if all(pattern.matches_value(value) for value, pattern in zip(values, column_patterns, strict=True)):
            kept.append(rowid)
    return kept

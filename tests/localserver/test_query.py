"""The Mongo-like query semantics the SDK relies on (localserver.query), on plain documents."""

from __future__ import annotations

from localserver.query import QuerySpec, parse, project, run_query

SPEC = QuerySpec(
    list_fields=frozenset({"id", "status", "project"}),
    pattern_fields=frozenset({"name"}),
    datetime_fields=frozenset({"last_update", "last_change"}),
    range_fields=frozenset({"last_iteration"}),
    plain_fields=frozenset({"ready"}),
)
DOCS = [
    {
        "id": "a",
        "name": "reviews",
        "status": "completed",
        "tags": ["x", "y"],
        "system_tags": ["dataset"],
        "last_update": "2026-01-01T10:00:00+00:00",
        "last_change": "2026-01-01T09:00:00+00:00",
        "runtime": {"version": "1.0.1"},
        "last_iteration": 5,
        "ready": True,
    },
    {
        "id": "b",
        "name": "reviews-old",
        "status": "created",
        "tags": ["y"],
        "system_tags": ["dataset", "archived"],
        "last_update": "2026-01-02T10:00:00+00:00",
        "last_change": "2026-01-03T00:00:00+00:00",
        "runtime": {},
        "last_iteration": 50,
        "ready": False,
    },
    {
        "id": "c",
        "name": "Other",
        "status": "published",
        "tags": [],
        "system_tags": [],
        "last_update": "2025-12-31T10:00:00+00:00",
        "last_change": None,
        "runtime": {"version": "1.0.10"},
    },
]


def ids(query: dict, spec: QuerySpec = SPEC) -> list[str]:
    parsed = parse(query, spec)
    return [d["id"] for d in DOCS if parsed.matches(d)]


def test_tag_operators():
    assert ids({"tags": ["x", "y"]}) == ["a", "b"]  # default: any
    assert ids({"tags": ["__$all", "x", "y"]}) == ["a"]
    assert ids({"system_tags": ["dataset", "-archived"]}) == ["a"]
    assert ids({"system_tags": ["__$all", "dataset", "__$not", "archived"]}) == ["a"]
    assert ids({"tags": [None]}) == ["a", "b", "c"]
    assert ids({"tags": []}) == ["a", "b", "c"]


def test_regex_names_are_searched_case_insensitively():
    assert ids({"name": "^reviews$"}) == ["a"]
    assert ids({"name": "reviews"}) == ["a", "b"]
    assert ids({"name": "^other$"}) == ["c"]


def test_datetime_prefixes_and_or_over_fields():
    assert ids({"last_update": ">2026-01-01T12:00:00+00:00"}) == ["b"]
    assert ids({"last_update": "<2026-01-01T00:00:00Z"}) == ["c"]
    assert ids({"last_update": [">=2026-01-01T10:00:00+00:00", "<2026-01-02T00:00:00"]}) == ["a"]
    either = {"_or_": {"fields": ["last_update", "last_change"], "datetime": [">2026-01-02T12:00:00+00:00"]}}
    assert ids(either) == ["b"]
    assert ids({"_any_": {"fields": ["name", "status"], "pattern": "^pub"}}) == ["c"]


def test_lists_ranges_plain_fields_and_unknown_keys():
    assert ids({"status": ["completed", "published"], "task_types": ["data_processing"], "method": "get"}) == ["a", "c"]
    assert ids({"last_iteration": [10, None]}) == ["b"]
    assert ids({"ready": True}) == ["a"]


def test_projection_keeps_empty_parents_like_mongo():
    assert project(DOCS[1], ["runtime.version", "name"]) == {"id": "b", "runtime": {}, "name": "reviews-old"}
    assert project({"id": "z"}, ["runtime.version"]) == {"id": "z"}
    excluded = project(DOCS[0], ["-runtime"])
    assert "runtime" not in excluded and excluded["name"] == "reviews"


def test_order_by_nested_fields_and_paging():
    assert [d["id"] for d in run_query(DOCS, {"order_by": ["-runtime.version"]}, SPEC)] == ["c", "a", "b"]  # as Mongo
    assert [d["id"] for d in run_query(DOCS, {"order_by": ["last_update"]}, SPEC)] == ["c", "a", "b"]
    request = {"order_by": ["-last_update"], "page": 1, "page_size": 2, "only_fields": ["id"]}
    assert run_query(DOCS, request, SPEC) == [{"id": "c"}]
    assert run_query(DOCS, {**request, "page": 2}, SPEC) == []

"""The store: schema migrations of an old data dir, get_all in SQL with the Python semantics, readers that never
wait for writers, and client patterns that cannot run away."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from server_testing import direct as call

from localserver import api
from localserver.api import tasks as tasks_api
from localserver.errors import ApiError
from localserver.migrations import LATEST
from localserver.query import compile_pattern, run_query, select
from localserver.server import LocalServer
from localserver.store import Store

# Written by the store of commit 9569a34 (schema version 1, before migrations were recorded): a project
# "legacy" with four tasks (tags t0..t3 + common; legacy-task-3 archived; 1 and 3 completed with 5 loss
# scalars each; 2 queued on "default"), a hidden dataset project with one dataset task, a published model, and
# the keys V1ACCESS / v1-secret.
SCHEMA_V1 = Path(__file__).parent / "data" / "schema_v1.sqlite"


def test_a_schema_v1_data_dir_is_migrated_and_served(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(SCHEMA_V1, data_dir / "localserver.sqlite")
    server = LocalServer(data_dir)
    try:
        assert (server.access_key, server.secret_key) == ("V1ACCESS", "v1-secret")
        conn = sqlite3.connect(data_dir / "localserver.sqlite")
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, LATEST + 1))
        conn.close()
        (legacy,) = call(server, "projects.get_all", name="^legacy$")["projects"]
        listed = call(
            server,
            "tasks.get_all",
            project=[legacy["id"]],
            tags=["common"],
            system_tags=["-archived"],
            type=["training"],
            order_by=["-name"],
            only_fields=["name", "status"],
        )["tasks"]
        assert [(t["name"], t["status"]) for t in listed] == [("legacy-task-1", "completed")]
        assert len(call(server, "tasks.get_all", name="^photos$", system_tags=["dataset"])["tasks"]) == 1
        visible = call(server, "projects.get_all", name="^legacy/", order_by=["name"])["projects"]
        assert [p["name"] for p in visible] == ["legacy/.datasets"]  # the dataset project is hidden
        everything = call(server, "projects.get_all", name="^legacy/", search_hidden=True, order_by=["name"])
        assert [p["name"] for p in everything["projects"]] == ["legacy/.datasets", "legacy/.datasets/photos"]
        (queued,) = call(server, "tasks.get_all", name="^legacy-task-2$")["tasks"]
        default = call(server, "queues.get_default")["id"]
        assert call(server, "queues.get_next_task", queue=default)["entry"]["task"] == queued["id"]
        histogram = call(server, "events.scalar_metrics_iter_histogram", task=listed[0]["id"])
        assert histogram["loss"]["train"]["x"] == [0, 1, 2, 3, 4]
        assert histogram["loss"]["train"]["y"] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
        (model,) = call(server, "models.get_all", tags=["production"], ready=True)["models"]
        assert model["name"] == "legacy-model"
    finally:
        server.close()
    reopened = Store(data_dir / "localserver.sqlite")  # migrating again is a no-op
    reopened.close()


def _random_doc(rng: random.Random, index: int, projects: list[str]) -> dict:
    doc = {
        "id": f"task-{index:03d}",
        "name": rng.choice(["alpha", "Alpha-2", "beta", "gamma ray", "delta"]) + f"-{index % 7}",
        "project": rng.choice(projects + [None]),
        "status": rng.choice(["created", "queued", "in_progress", "completed", "failed"]),
        "type": rng.choice(["training", "data_processing", "controller"]),
        "user": rng.choice(["u1", "u2"]),
        "parent": rng.choice([None, "task-000", "task-001"]),
        "created": f"2026-01-{rng.randint(1, 28):02d}T10:00:00+00:00",
        "last_update": rng.choice([None, f"2026-02-{rng.randint(1, 28):02d}T10:00:00+00:00"]),
        "tags": rng.sample(["a", "b", "c", "d"], rng.randint(0, 3)),
        "system_tags": rng.sample(["archived", "hidden", "dataset", "pipeline"], rng.randint(0, 2)),
        "comment": rng.choice(["", "needle in comment", "Haystack"]),
        "runtime": rng.choice([{}, {"version": f"1.0.{rng.randint(0, 12)}"}]),
        "last_iteration": rng.randint(0, 100),
    }
    if index % 5 == 0:
        del doc["comment"]  # absent, which a projection leaves out, unlike a null
    return doc


QUERIES = [
    {},
    {"project": ["p1"]},
    {"project": ["p1", "p2"], "status": ["completed", "failed"], "order_by": ["-last_update"], "page_size": 5},
    {"status": ["-created"], "order_by": ["name", "-created"], "page": 2, "page_size": 7},
    {"tags": ["__$all", "a", "b"], "system_tags": ["-archived"]},
    {"tags": ["a", "-c"], "system_tags": ["__$all", "dataset", "__$not", "archived"], "search_hidden": True},
    {"name": "^alpha", "order_by": ["-name"], "page_size": 4, "page": 1},
    {"name": "ray", "type": ["controller", "training"], "user": ["u2"]},
    {"parent": ["task-000"], "order_by": ["-runtime.version"], "only_fields": ["runtime.version", "name"]},
    {"id": ["task-003", "task-017", "task-040"], "only_fields": ["id", "system_tags"]},
    {"search_text": "NEEDLE", "order_by": ["created"], "page_size": 3},
    {"search_text": "task-01", "status": ["completed"]},
    {"_or_": {"fields": ["last_update", "created"], "datetime": [">2026-02-20T00:00:00+00:00"]}},
    {"last_iteration": [50, None], "order_by": ["-last_iteration", "name"], "page_size": 10},
    {"name": "^(alpha|beta)-[0-3]$", "project": ["p2"], "order_by": ["-created"], "size": 3},
    {"status": ["__$all", "completed", "failed"]},
    {"project": [None], "tags": [None]},
    {"order_by": ["-created"], "page_size": 30, "only_fields": ["name", "comment", "parent", "tags", "last_update"]},
    {"status": ["completed"], "order_by": ["name"], "page_size": 9, "only_fields": ["id", "runtime", "last_iteration"]},
    {"_all_": {"fields": ["name", "comment"], "pattern": "a"}, "order_by": ["name"], "page_size": 5},
    {"last_update": ["2026-02-01T00:00:00", "2026-02-20T00:00:00"], "status": ["-failed"], "tags": ["__$not", "a"]},
    {"name": ["^alpha", "beta"], "project": ["p1"], "system_tags": ["__$any", "dataset", "pipeline"], "size": 8},
    {"system_tags": ["-archived"], "project": ["p2"], "only_fields": ["id"]},  # the web UI's count: no decoding
    {"status": ["completed"], "only_fields": ["id", "name", "comment"]},
]


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
def test_get_all_in_sql_matches_the_python_semantics(tmp_path, query):
    rng = random.Random(7)
    store = Store(tmp_path / "db.sqlite")
    docs = [_random_doc(rng, index, ["p1", "p2", "p3"]) for index in range(120)]
    with store.transaction():
        for doc in docs:
            store.put("tasks", doc)
    with store.read():
        got = select(store, "tasks", query, tasks_api.SPEC)
    listed = (
        docs if query.get("search_hidden") or query.get("id") else [d for d in docs if "hidden" not in d["system_tags"]]
    )
    assert got == run_query(listed, query, tasks_api.SPEC)
    store.close()


def test_a_page_of_plain_fields_is_right_when_a_document_holds_nan(tmp_path):
    """SQLite takes plain fields out of documents, but a NaN (a diverged metric) is malformed JSON to it."""
    store = Store(tmp_path / "db.sqlite")
    docs = [_random_doc(random.Random(index), index, ["p1"]) for index in range(6)]
    docs[3]["last_metrics"] = {"loss": float("nan")}
    with store.transaction():
        for doc in docs:
            store.put("tasks", doc)
    query = {"order_by": ["id"], "page_size": 6, "only_fields": ["name", "comment"], "search_hidden": True}
    with store.read():
        got = select(store, "tasks", query, tasks_api.SPEC)
    assert got == [
        {"id": d["id"], "name": d["name"], **({"comment": d["comment"]} if "comment" in d else {})} for d in docs
    ]
    store.close()


def encoded(data: dict) -> api.Encoded:
    return api.Encoded(data, json.dumps(data).encode())


def test_the_result_cache_stays_within_its_bytes_whatever_the_requests():
    cache = api.ResultCache(max_bytes=64 * 1024)
    computed = []
    for index in range(1000):  # distinct keys, as a client varying a filter would send
        cache.get(("task", index), lambda i=index: computed.append(i) or encoded({"x": list(range(i % 50))}))
    assert cache._size <= cache.max_bytes and len(cache._entries) <= cache.max_bytes // cache.KEY_BYTES
    recomputed = encoded({"x": "recomputed"})
    assert cache.get(("task", 999), lambda: recomputed) == {"x": list(range(999 % 50))}  # recent: kept
    assert cache.get(("task", 0), lambda: recomputed) == {"x": "recomputed"}  # oldest: evicted
    huge = cache.get("huge", lambda: encoded({"x": "y" * 10_000}))  # above an eighth of max_bytes: not kept
    assert huge["x"] == "y" * 10_000 and "huge" not in cache._entries


def test_unknown_filter_and_field_paths_are_refused_and_sdk_options_accepted(server):
    sdk_options = {
        "method": "get",
        "task_types": ["data_processing"],
        "search_hidden": True,
        "only_fields": ["id", "runtime.version", "last_metrics"],
        "allow_public": True,
        "include_subprojects": False,
        "scroll_id": None,
        "refresh_scroll": False,
        "size": 10,
        "_allow_extra_fields_": True,
        "hyperparams.General.lr.value": ["0.1"],
        "order_by": ["-last_update", "runtime.version"],
    }
    assert call(server, "tasks.get_all", **sdk_options)["tasks"] == []
    for bad in ({"no_such_field": 1}, {"order_by": ["nosuch.value"]}, {"only_fields": ["id", "bogus"]}):
        with pytest.raises(ApiError) as refused:
            call(server, "tasks.get_all", **bad)
        assert (refused.value.code, refused.value.subcode) == (400, 12)
        assert "invalid task field" in refused.value.msg


def test_a_pattern_outside_the_safe_subset_is_refused_whatever_the_data(server):
    """The request is parsed before anything is read: an empty result set does not let a bad pattern through."""
    for request in ({"name": "^(a+)+$"}, {"_or_": {"fields": ["name", "comment"], "pattern": "(ab|cd)*e"}}):
        with pytest.raises(ApiError) as refused:
            call(server, "tasks.get_all", project=["no-such-project"], **request)
        assert refused.value.code == 400 and "pattern" in refused.value.msg


def test_search_text_is_a_case_insensitive_substring_not_a_pattern(server):
    project = call(server, "projects.create", name="search")["id"]
    ids = {
        name: call(server, "tasks.create", name=name, project=project, comment=comment)["id"]
        for name, comment in (("Resnet.v2", ""), ("resnetXv2", ""), ("other", "about RESNET.V2"))
    }
    found = call(server, "tasks.get_all", project=[project], search_text="resnet.v2", order_by=["name"])["tasks"]
    assert [t["id"] for t in found] == [ids["Resnet.v2"], ids["other"]]  # "." is no wildcard
    assert (
        call(server, "tasks.get_all", project=[project], search_text=ids["resnetXv2"][4:20])["tasks"][0]["id"]
        == ids["resnetXv2"]
    )
    assert len(call(server, "tasks.get_all", project=[project], search_text="(")["tasks"]) == 0


def test_readers_do_not_wait_for_a_writer(server):
    call(server, "tasks.create", name="reader")
    writing, release = threading.Event(), threading.Event()

    def slow_writer():
        with server.store.transaction():
            writing.set()
            release.wait(10)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert writing.wait(5)
        start = time.monotonic()
        assert [t["name"] for t in call(server, "tasks.get_all", name="^reader$")["tasks"]] == ["reader"]
        assert time.monotonic() - start < 1
    finally:
        release.set()
        writer.join()


@pytest.mark.parametrize(
    "pattern", ["^(a+)+$", "(a|aa)+$", "(\\w+\\s?)+$", "(x*)*y", "^(a|a)*$", "(a)\\1", "a+b+c+", "a" * 300]
)
def test_patterns_that_can_backtrack_are_refused(pattern):
    with pytest.raises(ApiError) as refused:
        compile_pattern(pattern)
    assert refused.value.code == 400


@pytest.mark.parametrize(
    "pattern",
    [
        "^demo-pipe(| #\\d+)$",
        "^demo/\\.datasets/reviews$",
        "^demo/.*",
        "reviews",
        ".*step.*two.*",
        "^step\\-prepare$",
        "^(alpha|beta)-[0-3]$",
    ],
)
def test_patterns_the_sdk_sends_are_accepted(pattern):
    assert compile_pattern(pattern) is not None

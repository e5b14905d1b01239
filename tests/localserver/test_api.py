"""HTTP contract of localserver: auth, envelope, routing, errors, status machine and atomic queue pops."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from server_testing import call, login, ok


@pytest.mark.slow
def test_login_and_token_checks(clearml_server):
    url = f"{clearml_server.api_url}/auth.login"
    assert requests.get(url, auth=(clearml_server.access_key, "wrong"), timeout=5).status_code == 401
    assert requests.get(url, auth=("wrong", clearml_server.secret_key), timeout=5).status_code == 401
    assert requests.get(url, timeout=5).status_code == 401
    token = login(clearml_server)
    for bad in (None, "not-a-jwt", token[:-4] + "abcd"):
        response = call(clearml_server, "tasks.get_all", bad)
        assert response.status_code == 401
        assert response.json()["data"] == {}
    short = login(clearml_server, expiration_sec=1)
    assert call(clearml_server, "projects.get_all", short).status_code == 200
    time.sleep(2.1)
    expired = call(clearml_server, "projects.get_all", short)
    assert expired.status_code == 401 and expired.json()["meta"]["result_msg"] == "Token expired"


def test_token_claims_select_the_modern_sdk_paths(clearml_server):
    import jwt

    claims = jwt.decode(login(clearml_server), options={"verify_signature": False})
    assert claims["api_version"] == "2.31" and claims["feature_set"] == "basic"
    assert tuple(map(int, claims["server_version"].split("."))) >= (1, 16, 3)
    assert claims["exp"] > time.time()


def test_routes_with_any_version_get_bodies_and_query_parameters(clearml_server):
    token = login(clearml_server)
    headers = {"Authorization": f"Bearer {token}"}
    name = f"route-{uuid.uuid4().hex[:6]}"
    created = ok(clearml_server, "projects.create", token, name=name)
    for prefix in ("/v2.5", "/v2.23", "/v2.31", "", "/api/v2.14"):
        response = requests.get(
            f"{clearml_server.api_url}{prefix}/projects.get_all", json={"name": f"^{name}$"}, headers=headers, timeout=5
        )
        assert response.status_code == 200
        assert [p["id"] for p in response.json()["data"]["projects"]] == [created["id"]]
    by_query = requests.get(
        f"{clearml_server.api_url}/projects.get_by_id", params={"project": created["id"]}, headers=headers, timeout=5
    )
    assert by_query.json()["data"]["project"]["name"] == name
    meta = by_query.json()["meta"]
    assert meta["result_code"] == 200 and meta["endpoint"]["name"] == "projects.get_by_id"
    assert by_query.headers["Connection"] == "close"


def test_unknown_endpoints_and_bad_input_are_400_with_empty_data(clearml_server):
    token = login(clearml_server)
    for endpoint in ("tasks.no_such_action", "nosuchservice.get_all"):
        response = call(clearml_server, endpoint, token)
        assert response.status_code == 400 and response.json()["data"] == {}
        assert f"unknown endpoint POST /v2.23/{endpoint}" in (clearml_server.data_dir / "server.log").read_text()
    not_json = requests.post(
        f"{clearml_server.api_url}/tasks.get_all",
        data=b"{not json",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert not_json.status_code == 400 and not_json.json()["data"] == {}
    missing = call(clearml_server, "tasks.get_by_id", token, task="no-such-task")
    assert missing.status_code == 400
    assert (missing.json()["meta"]["result_subcode"], missing.json()["data"]) == (101, {})
    queue_by_name = call(clearml_server, "queues.get_by_id", token, queue="default")  # get_queue_id relies on it
    assert queue_by_name.status_code == 400 and queue_by_name.json()["data"] == {}
    assert call(clearml_server, "models.get_by_id", token, model="nope").json()["meta"]["result_subcode"] == 201


def test_project_hierarchy_and_hidden_projects(clearml_server):
    token = login(clearml_server)
    root = f"tree-{uuid.uuid4().hex[:6]}"
    child_id = ok(clearml_server, "projects.create", token, name=f"{root}/.datasets/photos")["id"]
    parent = ok(clearml_server, "projects.get_all", token, name=f"^{root}/\\.datasets$")["projects"][0]
    ok(clearml_server, "projects.update", token, project=parent["id"], system_tags=["hidden"])
    ok(clearml_server, "projects.update", token, project=child_id, system_tags=["dataset", "hidden"])
    visible = ok(clearml_server, "projects.get_all", token, name=f"^{root}")["projects"]
    assert [p["name"] for p in visible] == [root]
    everything = ok(clearml_server, "projects.get_all", token, name=f"^{root}/.*", search_hidden=True)["projects"]
    assert sorted(p["name"] for p in everything) == [f"{root}/.datasets", f"{root}/.datasets/photos"]
    child = ok(clearml_server, "projects.get_by_id", token, project=child_id)["project"]
    assert child["parent"] == parent["id"] and child["basename"] == "photos"
    duplicate = call(clearml_server, "projects.create", token, name=root)
    assert duplicate.status_code == 400 and duplicate.json()["meta"]["result_subcode"] == 801


def test_status_machine_timestamps_and_force(clearml_server):
    token = login(clearml_server)
    task_id = ok(clearml_server, "tasks.create", token, name="states", type="training")["id"]
    created = ok(clearml_server, "tasks.get_by_id", token, task=task_id)["task"]
    assert created["status"] == "created"
    refused = call(clearml_server, "tasks.completed", token, task=task_id)
    assert refused.status_code == 400 and refused.json()["meta"]["result_subcode"] == 110
    ok(clearml_server, "tasks.started", token, task=task_id)
    ok(clearml_server, "tasks.completed", token, task=task_id)
    done = ok(clearml_server, "tasks.get_by_id", token, task=task_id)["task"]
    assert done["status"] == "completed" and done["started"] and done["completed"]
    assert done["last_update"] > created["last_update"] and done["last_change"] > created["last_change"]
    assert call(clearml_server, "tasks.stopped", token, task=task_id).status_code == 400
    ok(clearml_server, "tasks.stopped", token, task=task_id, force=True)
    assert call(clearml_server, "tasks.edit", token, task=task_id, name="x").status_code == 400
    ok(clearml_server, "tasks.edit", token, task=task_id, name="renamed", force=True)
    assert ok(clearml_server, "tasks.get_by_id", token, task=task_id)["task"]["name"] == "renamed"


def test_events_json_lines_update_last_metrics(clearml_server):
    token = login(clearml_server)
    task_id = ok(clearml_server, "tasks.create", token, name="events", type="training")["id"]
    lines = "\n".join(
        requests.models.complexjson.dumps(
            {
                "task": task_id,
                "type": "training_stats_scalar",
                "metric": "acc",
                "variant": "val",
                "iter": i,
                "value": v,
                "timestamp": 1000 + i,
                "method": "get",
            }
        )
        for i, v in enumerate([0.5, 0.9, 0.7])
    )
    response = requests.post(
        f"{clearml_server.api_url}/events.add_batch",
        data=lines,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json-lines"},
        timeout=5,
    )
    assert response.json()["data"]["added"] == 3
    task = ok(clearml_server, "tasks.get_by_id", token, task=task_id)["task"]
    (variants,) = task["last_metrics"].values()
    (value,) = variants.values()
    assert (value["value"], value["min_value"], value["max_value"], task["last_iteration"]) == (0.7, 0.5, 0.9, 2)
    histogram = ok(clearml_server, "events.scalar_metrics_iter_histogram", token, task=task_id)
    assert histogram["acc"]["val"] == {"name": "val", "x": [0, 1, 2], "y": [0.5, 0.9, 0.7]}


def _add_scalars(server, token, task_id: str, points: list[tuple[int, float]]) -> None:
    events = [
        {"task": task_id, "type": "training_stats_scalar", "metric": "loss", "variant": "train", "iter": i, "value": v}
        for i, v in points
    ]
    assert ok(server, "events.add_batch", token, requests=events)["added"] == len(points)


def test_cached_scalar_histograms_follow_new_reported_again_and_deleted_events(clearml_server):
    token = login(clearml_server)
    task_id = ok(clearml_server, "tasks.create", token, name="cached-scalars", type="training")["id"]

    def histogram() -> dict:
        response = call(clearml_server, "events.scalar_metrics_iter_histogram", token, task=task_id)
        assert response.json()["meta"]["result_code"] == 200  # the cached answer is spliced into a whole envelope
        return response.json()["data"]

    _add_scalars(clearml_server, token, task_id, [(0, 1.0), (1, 0.5)])
    assert histogram() == histogram() == {"loss": {"train": {"name": "train", "x": [0, 1], "y": [1.0, 0.5]}}}
    _add_scalars(clearml_server, token, task_id, [(1, 0.25), (2, 0.2)])  # iteration 1 reported again
    assert histogram()["loss"]["train"] == {"name": "train", "x": [0, 1, 2], "y": [1.0, 0.25, 0.2]}
    ok(clearml_server, "events.delete_for_task", token, task=task_id)
    assert histogram() == {}
    _add_scalars(clearml_server, token, task_id, [(5, 0.1)])
    assert histogram()["loss"]["train"]["x"] == [5]
    infinite = {"task": task_id, "type": "training_stats_scalar", "metric": "loss", "variant": "train", "iter": 6}
    response = requests.post(  # Python's json (the SDK's) writes float("inf") as Infinity
        f"{clearml_server.api_url}/events.add_batch",
        data=json.dumps({**infinite, "value": float("inf")}),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.json()["data"]["added"] == 1
    assert histogram()["loss"]["train"]["y"] == [0.1, float("inf")]  # not null


def test_integers_beyond_64_bits_are_refused_and_nothing_is_stored(clearml_server):
    """MongoDB, the real server's store, holds 64-bit integers; a bigger one would be read back rounded."""
    token = login(clearml_server)
    task_id = ok(clearml_server, "tasks.create", token, name="big-ints", type="training")["id"]
    _add_scalars(clearml_server, token, task_id, [(3, 0.5)])
    huge = {"task": task_id, "type": "training_stats_scalar", "metric": "m", "variant": "v", "iter": 2**64, "value": 1}
    response = call(clearml_server, "events.add_batch", token, requests=[huge])
    assert response.status_code == 400 and "64 bits" in response.json()["meta"]["result_msg"]
    assert ok(clearml_server, "tasks.get_by_id", token, task=task_id)["task"]["last_iteration"] == 3
    page = requests.get(
        f"{clearml_server.api_url}/tasks.get_all?page_size={2**70}", headers={"Authorization": f"Bearer {token}"}
    )
    assert page.status_code == 400
    assert ok(clearml_server, "tasks.get_all", token, id=[task_id], page_size=2**63 - 1)["tasks"][0]["id"] == task_id


def test_concurrent_get_next_task_hands_out_each_task_once(clearml_server):
    token = login(clearml_server)
    queue_id = ok(clearml_server, "queues.create", token, name=f"pop-{uuid.uuid4().hex[:6]}")["id"]
    task_ids = []
    for index in range(40):
        task_id = ok(clearml_server, "tasks.create", token, name=f"pop-{index}", type="training")["id"]
        ok(clearml_server, "tasks.enqueue", token, task=task_id, queue=queue_id)
        task_ids.append(task_id)

    def drain(_):
        popped = []
        while entry := ok(clearml_server, "queues.get_next_task", token, queue=queue_id).get("entry"):
            popped.append(entry["task"])
        return popped

    with ThreadPoolExecutor(8) as pool:
        results = [task for popped in pool.map(drain, range(8)) for task in popped]
    assert sorted(results) == sorted(task_ids)
    assert ok(clearml_server, "queues.get_num_entries", token, queue=queue_id)["num"] == 0


def test_pending_tasks_move_within_their_queue_and_bad_moves_change_nothing(clearml_server):
    token = login(clearml_server)
    queue_id = ok(clearml_server, "queues.create", token, name=f"order-{uuid.uuid4().hex[:6]}")["id"]
    other = ok(clearml_server, "queues.create", token, name=f"other-{uuid.uuid4().hex[:6]}")["id"]
    a, b, c, d = (ok(clearml_server, "tasks.create", token, name=name, type="training")["id"] for name in "abcd")
    for task_id in (a, b, c, d):
        ok(clearml_server, "tasks.enqueue", token, task=task_id, queue=queue_id)
    lone = ok(clearml_server, "tasks.create", token, name="lone", type="training")["id"]
    ok(clearml_server, "tasks.enqueue", token, task=lone, queue=other)

    def order() -> list[str]:
        return [
            entry["task"] for entry in ok(clearml_server, "queues.get_by_id", token, queue=queue_id)["queue"]["entries"]
        ]

    def move(action: str, task_id: str, **extra) -> int:
        return ok(clearml_server, f"queues.{action}", token, queue=queue_id, task=task_id, **extra)["position"]

    assert move("move_task_to_front", c) == 0 and order() == [c, a, b, d]
    assert move("move_task_backward", c, count=2) == 2 and order() == [a, b, c, d]
    assert move("move_task_forward", d) == 2 and order() == [a, b, d, c]
    assert move("move_task_to_back", a) == 3 and order() == [b, d, c, a]
    assert move("move_task_forward", b, count=10) == 0 and order() == [b, d, c, a]  # clamped: already first
    assert move("move_task_backward", c, count=10) == 3 and order() == [b, d, a, c]

    for bad in ({"task": lone}, {"task": a, "count": 0}, {"task": a, "count": "2"}, {"task": a, "count": True}):
        response = call(clearml_server, "queues.move_task_forward", token, queue=queue_id, **bad)
        assert response.status_code == 400, bad
    assert order() == [b, d, a, c]
    assert [
        entry["task"] for entry in ok(clearml_server, "queues.get_by_id", token, queue=other)["queue"]["entries"]
    ] == [lone]
    popped = [ok(clearml_server, "queues.get_next_task", token, queue=queue_id)["entry"]["task"] for _ in range(4)]
    assert popped == [b, d, a, c]  # agents take them in the new order


def test_a_catastrophic_pattern_is_refused_without_stalling_other_clients(clearml_server):
    token = login(clearml_server)
    project = ok(clearml_server, "projects.create", token, name=f"redos-{uuid.uuid4().hex[:6]}")["id"]
    victim = ok(clearml_server, "tasks.create", token, name="a" * 40 + "!", project=project)["id"]
    answers = {}

    def attack():
        answers["attack"] = call(clearml_server, "tasks.get_all", token, name="^(a+)+$", project=[project])

    attacker = threading.Thread(target=attack)
    attacker.start()
    start = time.monotonic()
    assert ok(clearml_server, "tasks.get_by_id", token, task=victim)["task"]["project"] == project
    assert time.monotonic() - start < 1
    attacker.join()
    refused = answers["attack"]
    assert refused.status_code == 400 and "backtracking" in refused.json()["meta"]["result_msg"]
    assert ok(clearml_server, "tasks.get_all", token, name="^a+!$", project=[project])["tasks"][0]["id"] == victim

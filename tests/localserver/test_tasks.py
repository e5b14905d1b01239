"""The task entity through the endpoints: one "fresh run" for create, clone and reset; one state machine for every
status change; batch endpoints that report only API errors per id; request shapes checked at the edge."""

from __future__ import annotations

import pytest
import requests
from server_testing import assert_shape_error, bearer, direct, login

from localserver import EmbeddedServer, api, task_entity
from localserver.errors import ApiError
from localserver.store import Store

# The fields a run leaves behind; a new, cloned or reset task starts without any of them.
RUN_FIELDS = {
    "status": "created",
    "status_reason": "",
    "status_message": "",
    "started": None,
    "completed": None,
    "published": None,
    "last_iteration": 0,
    "last_metrics": {},
    "last_worker": None,
    "last_worker_report": None,
    "active_duration": None,
    "runtime": {},
}


def call(server, endpoint: str, **body):
    return direct(server, endpoint, worker="host:0", **body)


def ran_task(server) -> dict:
    """A task that ran on a worker: started, pinged, reported a scalar, stored artifacts and a model, failed."""
    task_id = call(server, "tasks.create", name="ran", type="training")["id"]
    call(server, "tasks.edit", task=task_id, output_dest="file:///out", execution={"parameters": {"a": 1}})
    call(server, "tasks.started", task=task_id)
    call(server, "tasks.ping", task=task_id)
    call(server, "tasks.edit", task=task_id, force=True, runtime={"progress": "50"})
    events = [{"type": "training_stats_scalar", "task": task_id, "iter": 3, "metric": "m", "variant": "v", "value": 1}]
    call(server, "events.add_batch", requests=events)
    artifacts = [{"key": "in", "type": "str", "mode": "input"}, {"key": "out", "type": "str"}]
    call(server, "tasks.add_or_update_artifacts", task=task_id, artifacts=artifacts)
    model_id = call(server, "models.create", name="m", uri="file:///m")["id"]
    call(server, "tasks.add_or_update_model", task=task_id, name="m", model=model_id, type="output")
    call(server, "tasks.update", task=task_id, output__error="boom")
    call(server, "tasks.failed", task=task_id, status_reason="crashed", status_message="boom")
    task = call(server, "tasks.get_by_id", task=task_id)["task"]
    assert task["last_worker_report"] and task["last_worker"] == "host:0" and task["last_iteration"] == 3
    return task


def assert_fresh(task: dict) -> None:
    assert {key: task[key] for key in RUN_FIELDS} == RUN_FIELDS
    assert task["execution"]["queue"] is None
    assert all(a.get("mode") == "input" for a in task["execution"]["artifacts"])
    assert task["models"]["output"] == []
    assert "error" not in task["output"]


def test_a_clone_starts_a_fresh_run_without_the_source_worker_report(server):
    source = ran_task(server)
    clone_id = call(server, "tasks.clone", task=source["id"])["id"]
    clone = call(server, "tasks.get_by_id", task=clone_id)["task"]
    assert_fresh(clone)
    assert clone["last_worker_report"] is None  # the regression: the clone carried the source's last report
    assert [a["key"] for a in clone["execution"]["artifacts"]] == ["in"]
    assert clone["execution"]["parameters"] == {"a": 1} and clone["output"] == {"destination": "file:///out"}
    assert clone["parent"] == source["id"] and clone["name"] == "ran (Clone)"
    assert clone["created"] > source["created"]


def test_create_clone_and_reset_start_the_same_fresh_run(server):
    created = call(server, "tasks.get_by_id", task=call(server, "tasks.create", name="new")["id"])["task"]
    assert_fresh(created)
    source = ran_task(server)
    call(server, "tasks.reset", task=source["id"])
    reset = call(server, "tasks.get_by_id", task=source["id"])["task"]
    assert_fresh(reset)
    assert [a["key"] for a in reset["execution"]["artifacts"]] == ["in"]
    assert reset["created"] == source["created"] and reset["output"] == {"destination": "file:///out"}
    assert call(server, "events.get_task_log", task=source["id"]).get("events", []) == []
    assert call(server, "events.scalar_metrics_iter_histogram", task=source["id"]) == {}
    fresh_keys = set(task_entity.fresh_run({}, "now"))
    assert fresh_keys <= set(created) and fresh_keys <= set(reset)


def test_every_status_change_follows_the_one_state_machine(server):
    task_id = call(server, "tasks.create", name="states")["id"]
    refusals = {
        "tasks.completed": "created",
        "tasks.failed": "created",
        "tasks.close": "created",
        "tasks.publish": "created",
        "tasks.dequeue": "created",
    }
    for endpoint, status in refusals.items():
        with pytest.raises(ApiError) as refused:
            call(server, endpoint, task=task_id)
        assert (refused.value.code, refused.value.subcode) == (400, 110), endpoint
        assert call(server, "tasks.get_by_id", task=task_id)["task"]["status"] == status
    call(server, "tasks.enqueue", task=task_id)
    call(server, "tasks.started", task=task_id)
    with pytest.raises(ApiError):
        call(server, "tasks.enqueue", task=task_id)  # in_progress -> queued is not a transition
    call(server, "tasks.completed", task=task_id, publish=True)
    assert call(server, "tasks.get_by_id", task=task_id)["task"]["status"] == "published"
    for endpoint in ("tasks.started", "tasks.reset", "tasks.stopped", "tasks.enqueue"):
        with pytest.raises(ApiError):
            call(server, endpoint, task=task_id)
    call(server, "tasks.reset", task=task_id, force=True)
    assert call(server, "tasks.get_by_id", task=task_id)["task"]["status"] == "created"
    for current, allowed in task_entity.TRANSITIONS.items():
        assert allowed <= set(task_entity.STATUSES) and current in task_entity.STATUSES


def test_an_api_error_in_a_batch_is_reported_per_id(server):
    running = call(server, "tasks.create", name="running")["id"]
    call(server, "tasks.started", task=running)
    idle = call(server, "tasks.create", name="idle")["id"]
    result = call(server, "tasks.delete_many", ids=[running, idle, "no-such-task"])
    assert [item["id"] for item in result["succeeded"]] == [idle]
    assert result["succeeded"][0]["deleted"] is True
    failed = {item["id"]: item["error"] for item in result["failed"]}
    assert set(failed) == {running, "no-such-task"}
    assert failed["no-such-task"]["codes"] == [400, 101] and "Invalid task id" in failed["no-such-task"]["msg"]
    assert failed[running]["codes"] == [400, 110]
    model = call(server, "models.create", name="m", uri="file:///m")["id"]
    archived = call(server, "models.archive_many", ids=[model, "nope"])
    assert archived["succeeded"] == [{"id": model, "archived": True}] and archived["failed"][0]["error"]["codes"] == [
        400,
        201,
    ]
    assert call(server, "models.get_by_id", model=model)["model"]["system_tags"] == ["archived"]


def test_a_programming_error_in_a_batch_is_a_500_and_stores_nothing(tmp_path, monkeypatch):
    with EmbeddedServer(tmp_path / "data") as server:
        token = login(server)
        url = f"{server.api_url}/v2.23"

        def post(endpoint: str, **body) -> requests.Response:
            return requests.post(f"{url}/{endpoint}", json=body, headers=bearer(token), timeout=5)

        ids = [post("tasks.create", name=name).json()["data"]["id"] for name in ("a", "b")]
        delete_events = Store.delete_events

        def broken_delete_events(self, task_id):  # a bug in the store on the second id, not a refusal of the API
            if task_id == ids[1]:
                raise KeyError(task_id)
            return delete_events(self, task_id)

        monkeypatch.setattr(Store, "delete_events", broken_delete_events)
        response = post("tasks.delete_many", ids=ids)
        assert response.status_code == 500 and response.json()["data"] == {}
        assert "Internal server error" in response.json()["meta"]["result_msg"]
        monkeypatch.undo()
        listed = post("tasks.get_all", id=ids).json()["data"]["tasks"]
        assert sorted(t["id"] for t in listed) == sorted(ids)  # the first deletion was rolled back too


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        ("tasks.create", {"name": "x", "tags": "not-a-list"}, "tags: Input should be a valid list"),
        ("tasks.create", {"name": ["x"]}, "name: Input should be a valid string"),
        ("tasks.create", {"name": "x", "hyperparams": []}, "hyperparams: Input should be a valid dictionary"),
        ("tasks.create", {"name": "x" * 5000}, "name: String should have at most"),
        ("tasks.edit_hyper_params", {"task": "t", "hyperparams": [{"section": "General"}]}, "hyperparams.0.name"),
        ("tasks.add_or_update_model", {"task": "t", "name": "m", "model": "x", "type": "middle"}, "type: Input"),
        ("tasks.delete_many", {"ids": ["a", 3]}, "ids.1: Input should be a valid string"),
        ("tasks.started", {"task": "t", "force": "maybe"}, "force: Input should be a valid boolean"),
    ],
)
def test_bodies_of_the_wrong_shape_are_refused_with_the_field_named(server, endpoint, body, message):
    assert_shape_error(server, endpoint, body, message)


def test_missing_fields_keep_their_message_and_unknown_fields_are_ignored(server):
    for body in ({}, {"task": ""}, {"task": None}):
        with pytest.raises(ApiError) as refused:
            api.call(server, "tasks.started", body, "local-user")
        assert (refused.value.code, refused.value.subcode, refused.value.msg) == (
            400,
            12,
            "Missing required field: task",
        )
    task_id = call(server, "tasks.create", name="x", method="get", some_future_field={"a": 1})["id"]
    assert "some_future_field" not in call(server, "tasks.get_by_id", task=task_id)["task"]
    call(server, "tasks.started", task=task_id, method="get", status_reason=None)


def test_the_400_envelope_of_a_shape_error_over_http(clearml_server):
    token = login(clearml_server)
    response = requests.post(
        f"{clearml_server.api_url}/v2.23/tasks.create",
        json={"name": "x", "system_tags": [1]},
        headers=bearer(token),
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["data"] == {}
    meta = response.json()["meta"]
    assert (meta["result_code"], meta["result_subcode"]) == (400, 12)
    assert meta["result_msg"] == "Validation error: system_tags.0: Input should be a valid string"

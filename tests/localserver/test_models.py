"""The model entity through the endpoints: request shapes checked at the edge, metadata keyed by its items, the
task's output model, and a refused request that leaves the stored model as it was."""

from __future__ import annotations

import pytest
from server_testing import assert_shape_error
from server_testing import direct as call

from localserver.errors import ApiError


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        ("models.create", {"name": "m", "labels": {"cat": "first"}}, "labels.cat: Input should be a valid integer"),
        ("models.create", {"name": "m", "tags": "production"}, "tags: Input should be a valid list"),
        ("models.create", {"name": "m", "design": "resnet"}, "design: Input should be a valid dictionary"),
        ("models.edit", {"model": "m", "ready": "maybe"}, "ready: Input should be a valid boolean"),
        ("models.edit", {"model": "m", "uri": "x" * (2 << 20)}, "uri: String should have at most"),
        ("models.update_for_task", {"task": "t", "iteration": "ten"}, "iteration: Input should be a valid integer"),
        ("models.add_or_update_metadata", {"model": "m", "metadata": [{"value": "1"}]}, "metadata.0.key: Field"),
        ("models.set_ready", {"model": ["m"]}, "model: Input should be a valid string"),
        ("models.delete_metadata", {"model": "m", "keys": [1]}, "keys.0: Input should be a valid string"),
    ],
)
def test_bodies_of_the_wrong_shape_are_refused_with_the_field_named(server, endpoint, body, message):
    assert_shape_error(server, endpoint, body, message)


def test_missing_fields_keep_their_message(server):
    for endpoint, body, field in (
        ("models.create", {"uri": "file:///m"}, "name"),
        ("models.edit", {"name": "x"}, "model"),
        ("models.update_for_task", {"uri": "file:///m"}, "task"),
    ):
        with pytest.raises(ApiError) as refused:
            call(server, endpoint, **body)
        assert refused.value.msg == f"Missing required field: {field}"


def test_a_refused_edit_leaves_the_model_as_stored(server):
    model_id = call(server, "models.create", name="m", labels={"cat": 0, "dog": 1}, tags=["a"])["id"]
    before = call(server, "models.get_by_id", model=model_id)["model"]
    with pytest.raises(ApiError):
        call(server, "models.edit", model=model_id, name="renamed", labels={"cat": "zero"})
    with pytest.raises(ApiError):
        call(server, "models.edit", model=model_id, name="renamed", project="no-such-project")
    assert call(server, "models.get_by_id", model=model_id)["model"] == before


def test_metadata_is_keyed_by_its_items_and_kept_as_sent(server):
    item = {"key": "metrics", "type": "json", "value": '{"accuracy": 0.9}'}
    model_id = call(server, "models.create", name="m", metadata=[item], method="post")["id"]
    assert call(server, "models.get_by_id", model=model_id)["model"]["metadata"] == {"metrics": item}
    call(server, "models.add_or_update_metadata", model=model_id, metadata=[{"key": "seq", "value": "2"}])
    stored = call(server, "models.get_by_id", model=model_id)["model"]["metadata"]
    assert stored == {"metrics": item, "seq": {"key": "seq", "value": "2"}}
    call(server, "models.delete_metadata", model=model_id, keys="metrics")
    assert list(call(server, "models.get_by_id", model=model_id)["model"]["metadata"]) == ["seq"]


def test_update_for_task_names_a_new_model_after_the_task_and_files_it_in_the_tasks_project(server):
    project = call(server, "projects.create", name="p")["id"]
    task_id = call(server, "tasks.create", name="train", project=project)["id"]
    created = call(server, "models.update_for_task", task=task_id, uri="file:///w.pt", iteration=3)
    model = call(server, "models.get_by_id", model=created["id"])["model"]
    assert created["created"] is True
    assert (model["name"], model["task"], model["project"], model["iteration"]) == ("train", task_id, project, 3)
    again = call(server, "models.update_for_task", task=task_id, override_model_id=created["id"], comment="tuned")
    assert again == {"id": created["id"], "created": False, "updated": 1}
    assert call(server, "models.get_by_id", model=created["id"])["model"]["comment"] == "tuned"
    outputs = call(server, "tasks.get_by_id", task=task_id)["task"]["models"]["output"]
    assert [o["model"] for o in outputs] == [created["id"]]

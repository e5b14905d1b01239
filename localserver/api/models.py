"""models.*: the model registry; ``ready: true`` is what the SDK calls published. Each endpoint but ``get_all``
(the query language) declares its body's shape (:mod:`.shapes`)."""

from __future__ import annotations

import copy
from typing import Annotated

from pydantic import Field

from ..errors import invalid_model
from ..query import QuerySpec, select
from . import Context, endpoint, new_id, now
from . import projects as projects_api
from . import tasks as tasks_api
from .batch import Batch, batch_endpoint, set_archived
from .shapes import MAX_ITEMS, Document, Id, Item, Name, Names, NonEmptyName, Shape, Tags, Text, shaped

SPEC = QuerySpec(
    list_fields=frozenset({"id", "user", "project", "task", "parent", "framework", "uri"}),
    pattern_fields=frozenset({"name", "comment"}),
    datetime_fields=frozenset({"created", "last_update", "last_change"}),
    plain_fields=frozenset({"ready"}),
    dotted_prefixes=("metadata", "labels", "design"),
    document_fields=frozenset(
        {
            *("id", "name", "uri", "comment", "framework", "design", "labels", "metadata", "tags", "system_tags"),
            *("ready", "task", "parent", "project", "iteration", "created", "last_update", "last_change", "user"),
            *("company",),
        }
    ),
    entity="model",
    search_fields=("id", "name", "comment", "uri"),
)
EDITABLE = ("name", "uri", "comment", "tags", "system_tags", "framework", "design", "labels", "task", "parent")
EDITABLE += ("iteration", "ready")  # plus project (which must exist) and metadata (keyed by its items' keys)


# request shapes
class MetadataItem(Item):
    key: NonEmptyName
    type: Name | None = None
    value: Text | None = None


Metadata = Annotated[list[MetadataItem], Field(max_length=MAX_ITEMS)]


class ModelFields(Shape):
    """What models.create, models.edit and models.update_for_task may set."""

    name: Name | None = None
    uri: Text | None = None
    comment: Text | None = None
    tags: Tags | None = None
    system_tags: Tags | None = None
    framework: Name | None = None
    design: Document | None = None
    labels: Annotated[dict[Name, int], Field(max_length=MAX_ITEMS)] | None = None
    task: Id | None = None
    parent: Id | None = None
    project: Id | None = None
    iteration: int | None = None
    ready: bool | None = None
    metadata: Metadata | None = None


class Create(ModelFields):
    name: NonEmptyName


class ModelRef(Shape):
    model: Id


class Edit(ModelRef, ModelFields):
    pass


class UpdateForTask(ModelFields):
    task: Id
    override_model_id: Id | None = None


class SetReady(ModelRef):
    publish_task: bool | None = None
    force_publish_task: bool | None = None


class Delete(ModelRef):
    force: bool | None = None


class AddMetadata(ModelRef):
    metadata: Metadata = []
    replace_metadata: bool | None = None


class DeleteMetadata(ModelRef):
    keys: Names = []


class TaskRef(Shape):
    task: Id


def get_model(ctx: Context, model_id) -> dict:
    doc = ctx.store.get("models", model_id) if isinstance(model_id, str) and model_id else None
    if doc is None:
        raise invalid_model(model_id)
    return doc


def save(ctx: Context, doc: dict) -> None:
    doc["last_update"] = doc["last_change"] = now()
    ctx.store.put("models", doc)


def _apply(ctx: Context, doc: dict, request: ModelFields) -> dict:
    """Replace the fields ``request`` gives; returns what changed."""
    fields = {key: copy.deepcopy(value) for key in EDITABLE if (value := getattr(request, key)) is not None}
    if request.project is not None:
        projects_api.get_project(ctx, request.project)
        fields["project"] = request.project
    if request.metadata is not None:
        fields["metadata"] = {item.key: item.stored() for item in request.metadata}
    doc.update(fields)
    return fields


@endpoint("models.create")
@shaped(Create)
def create(ctx: Context, request: Create) -> dict:
    doc = _new_model(ctx, request)
    save(ctx, doc)
    return {"id": doc["id"], "created": True}


def _new_model(ctx: Context, request: ModelFields) -> dict:
    doc = {
        "id": new_id(),
        "name": "",
        "uri": "",
        "comment": "",
        "framework": None,
        "design": {},
        "labels": {},
        "metadata": {},
        "tags": [],
        "system_tags": [],
        "ready": False,
        "task": None,
        "parent": None,
        "project": None,
        "iteration": None,
        "created": now(),
        "user": ctx.user,
        "company": "",
    }
    _apply(ctx, doc, request)
    return doc


@endpoint("models.get_by_id", read_only=True)
@shaped(ModelRef)
def get_by_id(ctx: Context, request: ModelRef) -> dict:
    return {"model": get_model(ctx, request.model)}


@endpoint("models.get_all", "models.get_all_ex", read_only=True)
def get_all(ctx: Context, body: dict) -> dict:
    return {"models": select(ctx.store, "models", body, SPEC, hide_hidden=False)}  # the query language checks it


@endpoint("models.get_by_task_id", read_only=True)
@shaped(TaskRef)
def get_by_task_id(ctx: Context, request: TaskRef) -> dict:
    task = tasks_api.get_task(ctx, request.task)
    outputs = task["models"].get("output") or []
    if not outputs:
        raise invalid_model(f"task {task['id']} has no output model")
    return {"model": get_model(ctx, outputs[-1]["model"])}


@endpoint("models.edit", "models.update")
@shaped(Edit)
def edit(ctx: Context, request: Edit) -> dict:
    doc = get_model(ctx, request.model)
    fields = _apply(ctx, doc, request)
    save(ctx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("models.update_for_task")
@shaped(UpdateForTask)
def update_for_task(ctx: Context, request: UpdateForTask) -> dict:
    """The task's output model: ``override_model_id``, or a new model named after the task by default."""
    task = tasks_api.get_task(ctx, request.task)
    if request.override_model_id:
        model = get_model(ctx, request.override_model_id)
        _apply(ctx, model, request)
    else:
        model = _new_model(ctx, request)
        model["name"] = request.name or task["name"]
    model["task"] = task["id"]
    if task.get("project"):
        model["project"] = task["project"]
    save(ctx, model)
    tasks_api.add_or_update_model(ctx, {"task": task["id"], "name": model["name"], "model": model["id"]})
    return {"id": model["id"], "created": not request.override_model_id, "updated": 1}


def _publish(ctx: Context, doc: dict, publish_task: bool) -> None:
    doc["ready"] = True
    save(ctx, doc)
    if publish_task and doc.get("task"):
        task = ctx.store.get("tasks", doc["task"])
        if task and task["status"] != "published":
            tasks_api.set_status(ctx, task, "published", force=True)


@endpoint("models.set_ready")
@shaped(SetReady)
def set_ready(ctx: Context, request: SetReady) -> dict:
    doc = get_model(ctx, request.model)
    _publish(ctx, doc, bool(request.publish_task))
    return {"updated": 1, "published_task": None}


def _publish_one(ctx: Context, doc: dict, request: Batch) -> None:
    _publish(ctx, doc, bool(request.publish_tasks or request.publish_task))


def _delete(ctx: Context, doc: dict, request: Batch) -> None:
    ctx.store.delete("models", doc["id"])


endpoint("models.publish_many")(batch_endpoint(get_model, _publish_one))
endpoint("models.archive_many")(batch_endpoint(get_model, set_archived(save, True)))
endpoint("models.unarchive_many")(batch_endpoint(get_model, set_archived(save, False)))
endpoint("models.delete_many")(batch_endpoint(get_model, _delete))


@endpoint("models.delete")
@shaped(Delete)
def delete(ctx: Context, request: Delete) -> dict:
    doc = get_model(ctx, request.model)
    ctx.store.delete("models", doc["id"])
    return {"deleted": True, "url": doc.get("uri")}


@endpoint("models.add_or_update_metadata")
@shaped(AddMetadata)
def add_or_update_metadata(ctx: Context, request: AddMetadata) -> dict:
    doc = get_model(ctx, request.model)
    metadata = {} if request.replace_metadata else (doc.get("metadata") or {})
    metadata.update((item.key, item.stored()) for item in request.metadata)
    doc["metadata"] = metadata
    save(ctx, doc)
    return {"updated": 1}


@endpoint("models.delete_metadata")
@shaped(DeleteMetadata)
def delete_metadata(ctx: Context, request: DeleteMetadata) -> dict:
    doc = get_model(ctx, request.model)
    metadata = doc.get("metadata") or {}
    for key in request.keys:
        metadata.pop(key, None)
    save(ctx, doc)
    return {"updated": 1}

"""models.*: the model registry; ``ready: true`` is what the SDK calls published."""

from __future__ import annotations

from ..errors import invalid_model
from ..query import QuerySpec, select
from . import Context, endpoint, id_list, new_id, now, require
from . import projects as projects_api
from . import tasks as tasks_api
from .batch import Batch, batch_endpoint, set_archived

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
EDITABLE = (
    "name",
    "uri",
    "comment",
    "tags",
    "system_tags",
    "framework",
    "design",
    "labels",
    "task",
    "parent",
    "iteration",
    "metadata",
    "ready",
)


def get_model(ctx: Context, model_id) -> dict:
    doc = ctx.store.get("models", model_id) if isinstance(model_id, str) and model_id else None
    if doc is None:
        raise invalid_model(model_id)
    return doc


def save(ctx: Context, doc: dict) -> None:
    doc["last_update"] = doc["last_change"] = now()
    ctx.store.put("models", doc)


def _apply(ctx: Context, doc: dict, body: dict) -> dict:
    fields = {key: body[key] for key in EDITABLE if body.get(key) is not None}
    if body.get("project") is not None:
        projects_api.get_project(ctx, body["project"])
        fields["project"] = body["project"]
    if isinstance(fields.get("metadata"), list):
        fields["metadata"] = {item["key"]: item for item in fields["metadata"] if item.get("key")}
    doc.update(fields)
    return fields


@endpoint("models.create")
def create(ctx: Context, body: dict) -> dict:
    stamp = now()
    doc = {
        "id": new_id(),
        "name": require(body, "name"),
        "uri": body.get("uri") or "",
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
        "created": stamp,
        "user": ctx.user,
        "company": "",
    }
    _apply(ctx, doc, body)
    save(ctx, doc)
    return {"id": doc["id"], "created": True}


@endpoint("models.get_by_id", read_only=True)
def get_by_id(ctx: Context, body: dict) -> dict:
    return {"model": get_model(ctx, require(body, "model"))}


@endpoint("models.get_all", "models.get_all_ex", read_only=True)
def get_all(ctx: Context, body: dict) -> dict:
    return {"models": select(ctx.store, "models", body, SPEC, hide_hidden=False)}


@endpoint("models.get_by_task_id", read_only=True)
def get_by_task_id(ctx: Context, body: dict) -> dict:
    task = tasks_api.get_task(ctx, require(body, "task"))
    outputs = task["models"].get("output") or []
    if not outputs:
        raise invalid_model(f"task {task['id']} has no output model")
    return {"model": get_model(ctx, outputs[-1]["model"])}


@endpoint("models.edit", "models.update")
def edit(ctx: Context, body: dict) -> dict:
    doc = get_model(ctx, require(body, "model"))
    fields = _apply(ctx, doc, body)
    save(ctx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("models.update_for_task")
def update_for_task(ctx: Context, body: dict) -> dict:
    task = tasks_api.get_task(ctx, require(body, "task"))
    if body.get("override_model_id"):
        model = get_model(ctx, body["override_model_id"])
        created = False
    else:
        model_id = create(ctx, {"name": body.get("name") or task["name"], "uri": body.get("uri")})["id"]
        model = get_model(ctx, model_id)
        created = True
    _apply(ctx, model, {**body, "task": task["id"], "project": task.get("project")})
    save(ctx, model)
    tasks_api.add_or_update_model(ctx, {"task": task["id"], "name": model["name"], "model": model["id"]})
    return {"id": model["id"], "created": created, "updated": 1}


def _publish(ctx: Context, doc: dict, publish_task: bool) -> None:
    doc["ready"] = True
    save(ctx, doc)
    if publish_task and doc.get("task"):
        task = ctx.store.get("tasks", doc["task"])
        if task and task["status"] != "published":
            tasks_api.set_status(ctx, task, "published", force=True)


@endpoint("models.set_ready")
def set_ready(ctx: Context, body: dict) -> dict:
    doc = get_model(ctx, require(body, "model"))
    _publish(ctx, doc, bool(body.get("publish_task")))
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
def delete(ctx: Context, body: dict) -> dict:
    doc = get_model(ctx, require(body, "model"))
    ctx.store.delete("models", doc["id"])
    return {"deleted": True, "url": doc.get("uri")}


@endpoint("models.add_or_update_metadata")
def add_or_update_metadata(ctx: Context, body: dict) -> dict:
    doc = get_model(ctx, require(body, "model"))
    metadata = {} if body.get("replace_metadata") else (doc.get("metadata") or {})
    for item in body.get("metadata") or []:
        metadata[require(item, "key")] = item
    doc["metadata"] = metadata
    save(ctx, doc)
    return {"updated": 1}


@endpoint("models.delete_metadata")
def delete_metadata(ctx: Context, body: dict) -> dict:
    doc = get_model(ctx, require(body, "model"))
    metadata = doc.get("metadata") or {}
    for key in id_list(body.get("keys")):
        metadata.pop(key, None)
    save(ctx, doc)
    return {"updated": 1}

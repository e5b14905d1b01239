"""tasks.*: documents, the status state machine, clone, hyperparameters, configuration, artifacts, models."""

from __future__ import annotations

import copy

from ..errors import bad_request, invalid_task, invalid_task_status
from ..query import QuerySpec, project, select
from . import Context, endpoint, id_list, new_id, now, require
from . import projects as projects_api
from . import queues as queues_api

SPEC = QuerySpec(
    list_fields=frozenset(
        {"id", "user", "type", "status", "project", "parent", "execution.queue", "models.input.model"}
    ),
    pattern_fields=frozenset({"name", "comment", "report", "status_message", "status_reason"}),
    datetime_fields=frozenset(
        {"created", "started", "completed", "published", "status_changed", "last_update", "last_change"}
    ),
    range_fields=frozenset({"last_iteration", "last_metrics", "active_duration"}),
    dotted_prefixes=("hyperparams", "configuration", "execution", "models", "runtime", "script", "container"),
    document_fields=frozenset(
        {
            *("id", "name", "type", "status", "status_reason", "status_message", "status_changed", "comment"),
            *("created", "started", "completed", "published", "last_update", "last_change", "last_iteration"),
            *("last_metrics", "last_worker", "last_worker_report", "active_duration", "project", "parent", "user"),
            *("company", "tags", "system_tags", "script", "execution", "output", "hyperparams", "configuration"),
            *("runtime", "models", "container", "input", "report"),
        }
    ),
    entity="task",
    search_fields=("id", "name", "comment", "report", "status_message"),
)

# Allowed status changes without ``force`` (the documented ClearML state machine).
TRANSITIONS = {
    "created": {"queued", "in_progress"},
    "queued": {"created", "in_progress", "stopped"},
    "in_progress": {"stopped", "failed", "created", "completed"},
    "completed": {"published", "in_progress", "created"},
    "stopped": {"closed", "created", "failed", "queued", "in_progress", "published", "publishing", "completed"},
    "failed": {"created", "stopped", "published", "queued"},
    "closed": {"created", "in_progress"},
    "publishing": {"published", "failed"},
    "published": set(),
}
EDITABLE = (
    "name",
    "tags",
    "system_tags",
    "type",
    "comment",
    "parent",
    "script",
    "hyperparams",
    "configuration",
    "container",
    "runtime",
    "input",
)  # plus project, execution (keeping artifacts and queue unless given), output_dest and models, handled below


def new_task(ctx: Context, body: dict) -> dict:
    stamp = now()
    doc = {
        "id": new_id(),
        "name": body.get("name") or "",
        "type": body.get("type") or "custom",
        "status": "created",
        "status_reason": "",
        "status_message": "",
        "status_changed": stamp,
        "comment": body.get("comment") or "",
        "created": stamp,
        "started": None,
        "completed": None,
        "published": None,
        "last_update": stamp,
        "last_change": stamp,
        "last_iteration": 0,
        "last_metrics": {},
        "last_worker": None,
        "active_duration": None,
        "project": body.get("project"),
        "parent": body.get("parent"),
        "user": ctx.user,
        "company": "",
        "tags": [],
        "system_tags": [],
        "script": {},
        "execution": {"queue": None, "parameters": {}, "artifacts": []},
        "output": {"destination": None},
        "hyperparams": {},
        "configuration": {},
        "runtime": {},
        "models": {"input": [], "output": []},
        "container": {},
    }
    _apply_fields(ctx, doc, body)
    return doc


def _apply_fields(ctx: Context, doc: dict, body: dict) -> dict:
    """Replace the editable fields present in ``body``; returns what changed."""
    fields = {key: copy.deepcopy(body[key]) for key in EDITABLE if body.get(key) is not None}
    if "project" in body and body["project"] is not None:
        projects_api.get_project(ctx, body["project"])
        fields["project"] = body["project"]
    if isinstance(body.get("execution"), dict):
        execution = copy.deepcopy(body["execution"])
        for kept in ("artifacts", "queue"):
            if execution.get(kept) is None:
                execution[kept] = doc["execution"].get(kept)
        fields["execution"] = execution
    if body.get("output_dest") is not None:
        doc["output"]["destination"] = body["output_dest"]
        fields["output.destination"] = body["output_dest"]
    if isinstance(body.get("models"), dict):
        fields["models"] = {"input": body["models"].get("input") or [], "output": body["models"].get("output") or []}
    doc.update({k: v for k, v in fields.items() if "." not in k})
    return fields


def get_task(ctx: Context, task_id) -> dict:
    doc = ctx.store.get("tasks", task_id) if isinstance(task_id, str) and task_id else None
    if doc is None:
        raise invalid_task(task_id)
    return doc


def save(ctx: Context, doc: dict, changed: bool = True) -> None:
    stamp = now()
    doc["last_update"] = stamp
    if changed:
        doc["last_change"] = stamp
    ctx.store.put("tasks", doc)


def set_status(ctx: Context, doc: dict, status: str, body: dict, **extra) -> dict:
    """Move ``doc`` to ``status`` following the state machine unless ``force``; returns updated fields."""
    current = doc.get("status") or "created"
    if status != current and status not in TRANSITIONS.get(current, set()) and not body.get("force"):
        raise invalid_task_status(f"cannot change task {doc['id']} from {current} to {status}")
    stamp = now()
    fields = {"status": status, "status_changed": stamp}
    if body.get("status_reason") is not None:
        fields["status_reason"] = body["status_reason"]
    if body.get("status_message") is not None:
        fields["status_message"] = body["status_message"]
    if status == "in_progress" and not doc.get("started"):
        fields["started"] = stamp
    if status in ("completed", "stopped", "failed"):
        fields["completed"] = stamp
    if status == "published":
        fields["published"] = stamp
    if status == "created":
        fields.update(started=None, completed=None)
    if current == "queued" and status != "queued" and doc["execution"].get("queue"):
        queues_api.remove_task(ctx, doc["execution"]["queue"], doc["id"])
    if ctx.worker and status == "in_progress":
        fields["last_worker"] = ctx.worker
    fields.update(extra)
    doc.update(fields)
    save(ctx, doc)
    return fields


def _status_endpoint(status: str):
    def handler(ctx: Context, body: dict) -> dict:
        doc = get_task(ctx, require(body, "task"))
        fields = set_status(ctx, doc, status, body)
        if status == "completed" and body.get("publish"):
            fields.update(set_status(ctx, doc, "published", {"force": True}))
        return {"updated": 1, "fields": fields}

    return handler


for _name, _status in (
    ("started", "in_progress"),
    ("stopped", "stopped"),
    ("failed", "failed"),
    ("completed", "completed"),
    ("close", "closed"),
):
    endpoint(f"tasks.{_name}")(_status_endpoint(_status))


@endpoint("tasks.stop")
def stop(ctx: Context, body: dict) -> dict:
    """A task in progress on a worker (an agent whose status reports name it) keeps running with the status
    message "stopping" until the agent, which watches for it, kills the process and reports ``tasks.stopped``;
    a local run, a task not in progress, or ``force`` stops at once."""
    doc = get_task(ctx, require(body, "task"))
    run_by_worker = any((worker.get("task") or {}).get("id") == doc["id"] for worker in ctx.store.scan("workers"))
    if doc["status"] == "in_progress" and run_by_worker and not body.get("force"):
        fields = {"status_message": "stopping", "status_reason": body.get("status_reason") or "stop request"}
        doc.update(fields)
        save(ctx, doc)
        return {"updated": 1, "fields": fields}
    message = body.get("status_message") or "stopped"
    return {"updated": 1, "fields": set_status(ctx, doc, "stopped", {**body, "status_message": message})}


@endpoint("tasks.publish")
def publish(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    fields = set_status(ctx, doc, "published", body)
    if body.get("publish_model", True):
        for item in doc["models"].get("output") or []:
            model = ctx.store.get("models", item.get("model"))
            if model and not model.get("ready"):
                model.update(ready=True, last_update=now())
                ctx.store.put("models", model)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.create")
def create(ctx: Context, body: dict) -> dict:
    require(body, "name")
    doc = new_task(ctx, body)
    save(ctx, doc)
    return {"id": doc["id"]}


@endpoint("tasks.get_by_id", read_only=True)
def get_by_id(ctx: Context, body: dict) -> dict:
    return {"task": project(get_task(ctx, require(body, "task")), body.get("only_fields"))}


@endpoint("tasks.get_all", "tasks.get_all_ex", read_only=True)
def get_all(ctx: Context, body: dict) -> dict:
    return {"tasks": select(ctx.store, "tasks", body, SPEC)}


@endpoint("tasks.edit")
def edit(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    if doc["status"] != "created" and not body.get("force"):
        raise invalid_task_status(f"task {doc['id']} is {doc['status']}; only created tasks can be edited")
    fields = _apply_fields(ctx, doc, body)
    save(ctx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.update")
def update(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    fields = {k: body[k] for k in ("name", "tags", "system_tags", "comment") if body.get(k) is not None}
    if body.get("project") is not None:
        projects_api.get_project(ctx, body["project"])
        fields["project"] = body["project"]
    if body.get("output__error") is not None:
        doc["output"]["error"] = body["output__error"]
    doc.update(fields)
    save(ctx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.ping")
def ping(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    if ctx.worker:
        doc["last_worker"] = ctx.worker
    doc["last_worker_report"] = now()
    save(ctx, doc, changed=False)  # last_update: the watchdog's sign of life
    return {}


@endpoint("tasks.set_requirements")
def set_requirements(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    doc["script"] = {**(doc.get("script") or {}), "requirements": body.get("requirements") or {}}
    save(ctx, doc)
    return {"updated": 1, "fields": {"script.requirements": doc["script"]["requirements"]}}


@endpoint("tasks.enqueue")
def enqueue(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    queue_ref = body.get("queue") or body.get("queue_name")
    queue = queues_api.get_queue(ctx, queue_ref) if queue_ref else queues_api.default_queue(ctx)
    if doc["status"] == "queued" and doc["execution"].get("queue"):
        queues_api.remove_task(ctx, doc["execution"]["queue"], doc["id"])
    fields = set_status(ctx, doc, "queued", body)
    doc["execution"]["queue"] = queue["id"]
    save(ctx, doc)
    queues_api.add_task(ctx, queue["id"], doc["id"])
    return {"queued": 1, "updated": 1, "fields": {**fields, "execution.queue": queue["id"]}, "queue_watched": True}


@endpoint("tasks.dequeue")
def dequeue(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    if doc["status"] != "queued" and not body.get("force") and body.get("new_status") != "in_progress":
        raise invalid_task_status(f"task {doc['id']} is not queued")
    if doc["execution"].get("queue"):
        queues_api.remove_task(ctx, doc["execution"]["queue"], doc["id"])
    fields = {}
    new_status = body.get("new_status") or "created"
    if doc["status"] != new_status:
        fields = set_status(ctx, doc, new_status, {**body, "force": True})
    if new_status == "created":
        doc["execution"]["queue"] = None
    save(ctx, doc)
    return {"dequeued": 1, "updated": 1, "fields": fields}


@endpoint("tasks.reset")
def reset(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    if doc["status"] == "published" and not body.get("force"):
        raise invalid_task_status(f"task {doc['id']} is published")
    dequeued = 0
    if doc["status"] == "queued" and doc["execution"].get("queue"):
        queues_api.remove_task(ctx, doc["execution"]["queue"], doc["id"])
        dequeued = 1
    fields = set_status(ctx, doc, "created", {**body, "force": True})
    doc["execution"]["queue"] = None
    doc["execution"]["artifacts"] = [a for a in doc["execution"].get("artifacts") or [] if a.get("mode") == "input"]
    doc["models"]["output"] = []
    doc.update(last_metrics={}, last_iteration=0, runtime={}, status_reason="", status_message="")
    ctx.store.delete_events(doc["id"])
    save(ctx, doc)
    return {"updated": 1, "dequeued": {"removed": dequeued}, "deleted_models": 0, "fields": fields}


@endpoint("tasks.clone")
def clone(ctx: Context, body: dict) -> dict:
    source = get_task(ctx, require(body, "task"))
    doc = copy.deepcopy(source)
    stamp = now()
    doc.update(
        id=new_id(),
        name=body.get("new_task_name") or f"{source['name']} (Clone)",
        comment=body.get("new_task_comment") or source.get("comment") or "",
        parent=body.get("new_task_parent") or source["id"],
        status="created",
        status_reason="",
        status_message="",
        status_changed=stamp,
        created=stamp,
        started=None,
        completed=None,
        published=None,
        last_iteration=0,
        last_metrics={},
        last_worker=None,
        active_duration=None,
        runtime={},
        user=ctx.user,
        output={"destination": source.get("output", {}).get("destination")},
    )
    if body.get("new_task_project"):
        projects_api.get_project(ctx, body["new_task_project"])
        doc["project"] = body["new_task_project"]
    doc["system_tags"] = [t for t in doc.get("system_tags") or [] if t not in ("development", "archived")]
    doc["execution"]["queue"] = None
    doc["execution"]["artifacts"] = [a for a in doc["execution"].get("artifacts") or [] if a.get("mode") == "input"]
    doc["models"] = {"input": doc.get("models", {}).get("input") or [], "output": []}
    overrides = {
        "tags": "new_task_tags",
        "system_tags": "new_task_system_tags",
        "hyperparams": "new_task_hyperparams",
        "configuration": "new_task_configuration",
        "container": "new_task_container",
    }
    for field, key in overrides.items():
        if body.get(key) is not None:
            doc[field] = copy.deepcopy(body[key])
    if body.get("new_task_input_models") is not None:
        doc["models"]["input"] = body["new_task_input_models"]
    if isinstance(body.get("execution_overrides"), dict):
        doc["execution"].update(body["execution_overrides"])
    save(ctx, doc)
    return {"id": doc["id"], "new_project": None}


def _delete(ctx: Context, doc: dict, body: dict) -> dict:
    if doc["status"] == "in_progress" and not body.get("force"):
        raise invalid_task_status(f"task {doc['id']} is in progress (use force)")
    if doc["status"] == "queued" and doc["execution"].get("queue"):
        queues_api.remove_task(ctx, doc["execution"]["queue"], doc["id"])
    events = ctx.store.delete_events(doc["id"])
    ctx.store.delete("tasks", doc["id"])
    return {"deleted": True, "events": {"deleted": events}, "updated_children": 0, "updated_models": 0}


@endpoint("tasks.delete")
def delete(ctx: Context, body: dict) -> dict:
    return _delete(ctx, get_task(ctx, require(body, "task")), body)


def _batch(action):
    def handler(ctx: Context, body: dict) -> dict:
        succeeded, failed = [], []
        for task_id in id_list(body.get("ids")):
            try:
                succeeded.append({"id": task_id, **action(ctx, get_task(ctx, task_id), body)})
            except Exception as exc:  # noqa: BLE001 - reported per id as the real API does
                failed.append({"id": task_id, "error": {"msg": str(exc)}})
        return {"succeeded": succeeded, "failed": failed}

    return handler


def _set_archived(archived: bool):
    def action(ctx: Context, doc: dict, body: dict) -> dict:
        tags = [t for t in doc.get("system_tags") or [] if t != "archived"]
        doc["system_tags"] = [*tags, "archived"] if archived else tags
        save(ctx, doc)
        return {"archived" if archived else "unarchived": True}

    return action


endpoint("tasks.delete_many")(_batch(_delete))
endpoint("tasks.archive_many")(_batch(_set_archived(True)))
endpoint("tasks.unarchive_many")(_batch(_set_archived(False)))


@endpoint("tasks.archive")
def archive(ctx: Context, body: dict) -> dict:
    for task_id in id_list(body.get("tasks")):
        _set_archived(True)(ctx, get_task(ctx, task_id), body)
    return {"archived": len(id_list(body.get("tasks")))}


# artifacts and models
@endpoint("tasks.add_or_update_artifacts")
def add_or_update_artifacts(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    artifacts = doc["execution"].setdefault("artifacts", []) or []
    for artifact in body.get("artifacts") or []:
        artifact = {"mode": "output", **artifact}
        key = (artifact.get("key"), artifact.get("mode"))
        artifacts[:] = [a for a in artifacts if (a.get("key"), a.get("mode", "output")) != key]
        artifacts.append(artifact)
    doc["execution"]["artifacts"] = artifacts
    save(ctx, doc)
    return {"updated": len(body.get("artifacts") or [])}


@endpoint("tasks.delete_artifacts")
def delete_artifacts(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    doomed = {(a.get("key"), a.get("mode") or "output") for a in body.get("artifacts") or []}
    before = doc["execution"].get("artifacts") or []
    kept = [a for a in before if (a.get("key"), a.get("mode", "output")) not in doomed]
    doc["execution"]["artifacts"] = kept
    save(ctx, doc)
    return {"deleted": len(before) - len(kept)}


@endpoint("tasks.add_or_update_model")
def add_or_update_model(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    kind = body.get("type") or "output"
    if kind not in ("input", "output"):
        raise bad_request(f"model type must be input or output, not {kind!r}")
    items = [m for m in doc["models"].get(kind) or [] if m.get("name") != body.get("name")]
    items.append({"name": require(body, "name"), "model": require(body, "model")})
    doc["models"][kind] = items
    if body.get("iteration") is not None:
        doc["last_iteration"] = max(doc.get("last_iteration") or 0, body["iteration"])
    save(ctx, doc)
    return {"updated": 1}


@endpoint("tasks.delete_models")
def delete_models(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    deleted = 0
    for ref in body.get("models") or []:
        kind = ref.get("type") or "output"
        before = doc["models"].get(kind) or []
        doc["models"][kind] = [m for m in before if m.get("name") != ref.get("name")]
        deleted += len(before) - len(doc["models"][kind])
    save(ctx, doc)
    return {"updated": deleted}


# hyperparameters and configuration
@endpoint("tasks.edit_hyper_params")
def edit_hyper_params(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    params = doc.get("hyperparams") or {}
    replace = body.get("replace_hyperparams") or "none"
    if replace == "all":
        params = {}
    new_items = body.get("hyperparams") or []
    if replace == "section":
        for section in {p.get("section") for p in new_items}:
            params.pop(section, None)
    for item in new_items:
        section = item.get("section") or "General"
        params.setdefault(section, {})[item["name"]] = {**item, "section": section}
    doc["hyperparams"] = params
    save(ctx, doc)
    return {"updated": 1}


@endpoint("tasks.get_hyper_params", read_only=True)
def get_hyper_params(ctx: Context, body: dict) -> dict:
    result = []
    for task_id in id_list(body.get("tasks")):
        doc = get_task(ctx, task_id)
        flat = [item for section in (doc.get("hyperparams") or {}).values() for item in section.values()]
        result.append({"task": task_id, "hyperparams": flat})
    return {"params": result}


@endpoint("tasks.delete_hyper_params")
def delete_hyper_params(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    params = doc.get("hyperparams") or {}
    deleted = 0
    for item in body.get("hyperparams") or []:
        section = params.get(item.get("section"))
        if section is None:
            continue
        if item.get("name"):
            deleted += section.pop(item["name"], None) is not None
        else:
            deleted += len(params.pop(item["section"]))
    doc["hyperparams"] = params
    save(ctx, doc)
    return {"deleted": deleted}


@endpoint("tasks.edit_configuration")
def edit_configuration(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    config = {} if body.get("replace_configuration") else (doc.get("configuration") or {})
    for item in body.get("configuration") or []:
        config[require(item, "name")] = item
    doc["configuration"] = config
    save(ctx, doc)
    return {"updated": 1}


@endpoint("tasks.get_configurations", read_only=True)
def get_configurations(ctx: Context, body: dict) -> dict:
    names = set(id_list(body.get("names")))
    result = []
    for task_id in id_list(body.get("tasks")):
        config = get_task(ctx, task_id).get("configuration") or {}
        items = [v for k, v in config.items() if not names or k in names]
        result.append({"task": task_id, "configuration": items})
    return {"configurations": result}


@endpoint("tasks.get_configuration_names", read_only=True)
def get_configuration_names(ctx: Context, body: dict) -> dict:
    result = []
    for task_id in id_list(body.get("tasks")):
        result.append({"task": task_id, "names": sorted(get_task(ctx, task_id).get("configuration") or {})})
    return {"configurations": result}


@endpoint("tasks.delete_configuration")
def delete_configuration(ctx: Context, body: dict) -> dict:
    doc = get_task(ctx, require(body, "task"))
    config = doc.get("configuration") or {}
    deleted = sum(config.pop(name, None) is not None for name in id_list(body.get("configuration")))
    save(ctx, doc)
    return {"deleted": deleted}


@endpoint("tasks.get_types", read_only=True)
def get_types(ctx: Context, body: dict) -> dict:
    project_ids = id_list(body.get("projects"))
    return {"types": sorted(t for t in ctx.store.distinct("tasks", "type", project_ids or None) if t)}

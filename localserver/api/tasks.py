"""tasks.*: documents, status changes, clone and reset, hyperparameters, configuration, artifacts, models.

The rules (the state machine, what a fresh run starts with) are in :mod:`localserver.task_entity`; this module
applies them to the store and the queues. Each endpoint declares its body's shape (:mod:`.shapes`).
"""

from __future__ import annotations

import copy
from typing import Annotated, Literal

from pydantic import Field

from .. import task_entity
from ..errors import invalid_task
from ..query import QuerySpec, project, select
from . import Context, endpoint, new_id, now
from . import projects as projects_api
from . import queues as queues_api
from .batch import batch_endpoint, set_archived
from .shapes import MAX_ITEMS, Document, Id, Ids, Item, Name, Names, NonEmptyName, Shape, Tags, Text, shaped

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
ModelKind = Literal["input", "output"]


# request shapes
class TaskRef(Shape):
    task: Id


class StatusChange(TaskRef):
    force: bool | None = None
    status_reason: Text | None = None
    status_message: Text | None = None


class Completed(StatusChange):
    publish: bool | None = None


class Publish(StatusChange):
    publish_model: bool | None = True


class Enqueue(StatusChange):
    queue: Name | None = None  # an id or a name
    queue_name: Name | None = None


class Dequeue(StatusChange):
    new_status: Literal[task_entity.STATUSES] | None = None


class TaskFields(Shape):
    """What ``tasks.create`` and ``tasks.edit`` set."""

    name: Name | None = None
    type: Name | None = None
    comment: Text | None = None
    tags: Tags | None = None
    system_tags: Tags | None = None
    parent: Id | None = None
    project: Id | None = None
    script: Document | None = None
    hyperparams: Document | None = None
    configuration: Document | None = None
    container: Document | None = None
    runtime: Document | None = None
    input: Document | None = None
    execution: Document | None = None
    output_dest: Text | None = None
    models: Document | None = None


class Create(TaskFields):
    name: NonEmptyName


class Edit(TaskFields):
    task: Id
    force: bool | None = None


class Update(TaskRef):
    name: Name | None = None
    comment: Text | None = None
    tags: Tags | None = None
    system_tags: Tags | None = None
    project: Id | None = None
    output__error: Text | None = None


class Clone(TaskRef):
    new_task_name: Name | None = None
    new_task_comment: Text | None = None
    new_task_parent: Id | None = None
    new_task_project: Id | None = None
    new_task_tags: Tags | None = None
    new_task_system_tags: Tags | None = None
    new_task_hyperparams: Document | None = None
    new_task_configuration: Document | None = None
    new_task_container: Document | None = None
    new_task_input_models: Annotated[list[Document], Field(max_length=MAX_ITEMS)] | None = None
    execution_overrides: Document | None = None


class ForceTaskRef(TaskRef):
    force: bool | None = None


class SetRequirements(TaskRef):
    requirements: Document | None = None


class ById(TaskRef):
    only_fields: Annotated[list[Text], Field(max_length=MAX_ITEMS)] | None = None


class Tasks(Shape):
    tasks: Ids = []


# state
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


def _leave_queue(ctx: Context, doc: dict) -> int:
    """Take a queued task out of its queue's entries; returns how many were removed."""
    if doc.get("status") == "queued" and doc["execution"].get("queue"):
        return queues_api.remove_task(ctx, doc["execution"]["queue"], doc["id"])
    return 0


def set_status(
    ctx: Context, doc: dict, status: str, *, force: bool = False, reason: str | None = None, message: str | None = None
) -> dict:
    """Move ``doc`` to ``status`` by the state machine (any status with ``force``), save it; returns the fields
    that changed. The one way every endpoint changes a task's status."""
    task_entity.check_transition(doc, status, force)
    fields = task_entity.status_fields(doc, status, now(), reason, message)
    if status != "queued":
        _leave_queue(ctx, doc)
    if ctx.worker and status == "in_progress":
        fields["last_worker"] = ctx.worker
    doc.update(fields)
    save(ctx, doc)
    return fields


def _change(ctx: Context, doc: dict, status: str, request: StatusChange, force: bool = False) -> dict:
    reason, message = request.status_reason, request.status_message
    return set_status(ctx, doc, status, force=force or bool(request.force), reason=reason, message=message)


def _apply_fields(ctx: Context, doc: dict, request: TaskFields) -> dict:
    """Replace the editable fields ``request`` gives; returns what changed."""
    fields = {key: copy.deepcopy(value) for key in EDITABLE if (value := getattr(request, key)) is not None}
    if request.project is not None:
        projects_api.get_project(ctx, request.project)
        fields["project"] = request.project
    if request.execution is not None:
        execution = copy.deepcopy(request.execution)
        for kept in ("artifacts", "queue"):
            if execution.get(kept) is None:
                execution[kept] = doc["execution"].get(kept)
        fields["execution"] = execution
    if request.output_dest is not None:
        doc["output"]["destination"] = request.output_dest
        fields["output.destination"] = request.output_dest
    if request.models is not None:
        models = copy.deepcopy(request.models)
        fields["models"] = {"input": models.get("input") or [], "output": models.get("output") or []}
    doc.update({k: v for k, v in fields.items() if "." not in k})
    return fields


# status changes
def _status_endpoint(status: str, shape: type[StatusChange]):
    @shaped(shape)
    def handler(ctx: Context, request: StatusChange) -> dict:
        doc = get_task(ctx, request.task)
        fields = _change(ctx, doc, status, request)
        if getattr(request, "publish", None):
            fields.update(set_status(ctx, doc, "published", force=True))
        return {"updated": 1, "fields": fields}

    return handler


for _name, _status, _shape in (
    ("started", "in_progress", StatusChange),
    ("stopped", "stopped", StatusChange),
    ("failed", "failed", StatusChange),
    ("completed", "completed", Completed),
    ("close", "closed", StatusChange),
):
    endpoint(f"tasks.{_name}")(_status_endpoint(_status, _shape))


@endpoint("tasks.stop")
@shaped(StatusChange)
def stop(ctx: Context, request: StatusChange) -> dict:
    """A task in progress on a worker (an agent whose status reports name it) keeps running with the status
    message "stopping" until the agent, which watches for it, kills the process and reports ``tasks.stopped``;
    a local run, a task not in progress, or ``force`` stops at once."""
    doc = get_task(ctx, request.task)
    run_by_worker = any((worker.get("task") or {}).get("id") == doc["id"] for worker in ctx.store.scan("workers"))
    if doc["status"] == "in_progress" and run_by_worker and not request.force:
        fields = {"status_message": "stopping", "status_reason": request.status_reason or "stop request"}
        doc.update(fields)
        save(ctx, doc)
        return {"updated": 1, "fields": fields}
    message = request.status_message or "stopped"
    fields = set_status(ctx, doc, "stopped", force=bool(request.force), reason=request.status_reason, message=message)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.publish")
@shaped(Publish)
def publish(ctx: Context, request: Publish) -> dict:
    doc = get_task(ctx, request.task)
    fields = _change(ctx, doc, "published", request)
    if request.publish_model:
        for item in doc["models"].get("output") or []:
            model = ctx.store.get("models", item.get("model"))
            if model and not model.get("ready"):
                model.update(ready=True, last_update=now())
                ctx.store.put("models", model)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.enqueue")
@shaped(Enqueue)
def enqueue(ctx: Context, request: Enqueue) -> dict:
    doc = get_task(ctx, request.task)
    queue_ref = request.queue or request.queue_name
    queue = queues_api.get_queue(ctx, queue_ref) if queue_ref else queues_api.default_queue(ctx)
    _leave_queue(ctx, doc)  # enqueued again: off the old queue first
    fields = _change(ctx, doc, "queued", request)
    doc["execution"]["queue"] = queue["id"]
    save(ctx, doc)
    queues_api.add_task(ctx, queue["id"], doc["id"])
    return {"queued": 1, "updated": 1, "fields": {**fields, "execution.queue": queue["id"]}, "queue_watched": True}


@endpoint("tasks.dequeue")
@shaped(Dequeue)
def dequeue(ctx: Context, request: Dequeue) -> dict:
    doc = get_task(ctx, request.task)
    new_status = request.new_status or "created"
    task_entity.check_dequeueable(doc, new_status, bool(request.force))
    if doc["execution"].get("queue"):
        queues_api.remove_task(ctx, doc["execution"]["queue"], doc["id"])
    fields = {}
    if doc["status"] != new_status:
        fields = _change(ctx, doc, new_status, request, force=True)
    if new_status == "created":
        doc["execution"]["queue"] = None
    save(ctx, doc)
    return {"dequeued": 1, "updated": 1, "fields": fields}


# documents
@endpoint("tasks.create")
@shaped(Create)
def create(ctx: Context, request: Create) -> dict:
    doc = task_entity.new_document(new_id(), ctx.user, now())
    _apply_fields(ctx, doc, request)
    save(ctx, doc)
    return {"id": doc["id"]}


@endpoint("tasks.get_by_id", read_only=True)
@shaped(ById)
def get_by_id(ctx: Context, request: ById) -> dict:
    return {"task": project(get_task(ctx, request.task), request.only_fields)}


@endpoint("tasks.get_all", "tasks.get_all_ex", read_only=True)
def get_all(ctx: Context, body: dict) -> dict:
    return {"tasks": select(ctx.store, "tasks", body, SPEC)}  # the query language checks its own body


@endpoint("tasks.edit")
@shaped(Edit)
def edit(ctx: Context, request: Edit) -> dict:
    doc = get_task(ctx, request.task)
    task_entity.check_editable(doc, bool(request.force))
    fields = _apply_fields(ctx, doc, request)
    save(ctx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.update")
@shaped(Update)
def update(ctx: Context, request: Update) -> dict:
    doc = get_task(ctx, request.task)
    fields = {k: v for k in ("name", "tags", "system_tags", "comment") if (v := getattr(request, k)) is not None}
    if request.project is not None:
        projects_api.get_project(ctx, request.project)
        fields["project"] = request.project
    if request.output__error is not None:
        doc["output"]["error"] = request.output__error
    doc.update(copy.deepcopy(fields))
    save(ctx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.ping")
@shaped(TaskRef)
def ping(ctx: Context, request: TaskRef) -> dict:
    doc = get_task(ctx, request.task)
    if ctx.worker:
        doc["last_worker"] = ctx.worker
    doc["last_worker_report"] = now()
    save(ctx, doc, changed=False)  # last_update: the watchdog's sign of life
    return {}


@endpoint("tasks.set_requirements")
@shaped(SetRequirements)
def set_requirements(ctx: Context, request: SetRequirements) -> dict:
    doc = get_task(ctx, request.task)
    doc["script"] = {**(doc.get("script") or {}), "requirements": copy.deepcopy(request.requirements or {})}
    save(ctx, doc)
    return {"updated": 1, "fields": {"script.requirements": doc["script"]["requirements"]}}


@endpoint("tasks.reset")
@shaped(StatusChange)
def reset(ctx: Context, request: StatusChange) -> dict:
    doc = get_task(ctx, request.task)
    task_entity.check_resettable(doc, bool(request.force))
    dequeued = _leave_queue(ctx, doc)
    fields = task_entity.fresh_run(doc, now())
    doc.update(fields)
    ctx.store.delete_events(doc["id"])
    save(ctx, doc)
    return {"updated": 1, "dequeued": {"removed": dequeued}, "deleted_models": 0, "fields": fields}


@endpoint("tasks.clone")
@shaped(Clone)
def clone(ctx: Context, request: Clone) -> dict:
    source = get_task(ctx, request.task)
    doc = task_entity.cloned_document(source, new_id(), ctx.user, now())
    doc["name"] = request.new_task_name or doc["name"]
    doc["comment"] = request.new_task_comment or source.get("comment") or ""
    doc["parent"] = request.new_task_parent or doc["parent"]
    if request.new_task_project:
        projects_api.get_project(ctx, request.new_task_project)
        doc["project"] = request.new_task_project
    overrides = {
        "tags": request.new_task_tags,
        "system_tags": request.new_task_system_tags,
        "hyperparams": request.new_task_hyperparams,
        "configuration": request.new_task_configuration,
        "container": request.new_task_container,
    }
    doc.update({field: copy.deepcopy(value) for field, value in overrides.items() if value is not None})
    if request.new_task_input_models is not None:
        doc["models"]["input"] = copy.deepcopy(request.new_task_input_models)
    if request.execution_overrides is not None:
        doc["execution"].update(copy.deepcopy(request.execution_overrides))
    save(ctx, doc)
    return {"id": doc["id"], "new_project": None}


def _delete(ctx: Context, doc: dict, request: ForceTaskRef) -> dict:
    task_entity.check_deletable(doc, bool(request.force))
    _leave_queue(ctx, doc)
    events = ctx.store.delete_events(doc["id"])
    ctx.store.delete("tasks", doc["id"])
    return {"deleted": True, "events": {"deleted": events}, "updated_children": 0, "updated_models": 0}


@endpoint("tasks.delete")
@shaped(ForceTaskRef)
def delete(ctx: Context, request: ForceTaskRef) -> dict:
    return _delete(ctx, get_task(ctx, request.task), request)


_archive = set_archived(save, True)
endpoint("tasks.delete_many")(batch_endpoint(get_task, _delete))
endpoint("tasks.archive_many")(batch_endpoint(get_task, _archive))
endpoint("tasks.unarchive_many")(batch_endpoint(get_task, set_archived(save, False)))


@endpoint("tasks.archive")
@shaped(Tasks)
def archive(ctx: Context, request: Tasks) -> dict:
    for task_id in request.tasks:
        _archive(ctx, get_task(ctx, task_id))
    return {"archived": len(request.tasks)}


# artifacts and models
class Artifact(Item):
    key: Name
    mode: ModelKind | None = None


class Artifacts(TaskRef):
    artifacts: Annotated[list[Artifact], Field(max_length=MAX_ITEMS)] = []


def _artifact_key(artifact: dict) -> tuple:
    return artifact.get("key"), artifact.get("mode") or "output"


@endpoint("tasks.add_or_update_artifacts")
@shaped(Artifacts)
def add_or_update_artifacts(ctx: Context, request: Artifacts) -> dict:
    doc = get_task(ctx, request.task)
    artifacts = doc["execution"].get("artifacts") or []
    for artifact in request.artifacts:
        artifact = {"mode": "output", **artifact.stored()}
        artifacts = [a for a in artifacts if _artifact_key(a) != _artifact_key(artifact)]
        artifacts.append(artifact)
    doc["execution"]["artifacts"] = artifacts
    save(ctx, doc)
    return {"updated": len(request.artifacts)}


@endpoint("tasks.delete_artifacts")
@shaped(Artifacts)
def delete_artifacts(ctx: Context, request: Artifacts) -> dict:
    doc = get_task(ctx, request.task)
    doomed = {_artifact_key(a.stored()) for a in request.artifacts}
    before = doc["execution"].get("artifacts") or []
    kept = [a for a in before if _artifact_key(a) not in doomed]
    doc["execution"]["artifacts"] = kept
    save(ctx, doc)
    return {"deleted": len(before) - len(kept)}


class ModelLink(TaskRef):
    name: NonEmptyName
    model: Id
    type: ModelKind | None = None
    iteration: int | None = None


@endpoint("tasks.add_or_update_model")
@shaped(ModelLink)
def add_or_update_model(ctx: Context, request: ModelLink) -> dict:
    doc = get_task(ctx, request.task)
    kind = request.type or "output"
    items = [m for m in doc["models"].get(kind) or [] if m.get("name") != request.name]
    items.append({"name": request.name, "model": request.model})
    doc["models"][kind] = items
    if request.iteration is not None:
        doc["last_iteration"] = max(doc.get("last_iteration") or 0, request.iteration)
    save(ctx, doc)
    return {"updated": 1}


class ModelRef(Item):
    name: Name | None = None
    type: ModelKind | None = None


class ModelRefs(TaskRef):
    models: Annotated[list[ModelRef], Field(max_length=MAX_ITEMS)] = []


@endpoint("tasks.delete_models")
@shaped(ModelRefs)
def delete_models(ctx: Context, request: ModelRefs) -> dict:
    doc = get_task(ctx, request.task)
    deleted = 0
    for ref in request.models:
        kind = ref.type or "output"
        before = doc["models"].get(kind) or []
        doc["models"][kind] = [m for m in before if m.get("name") != ref.name]
        deleted += len(before) - len(doc["models"][kind])
    save(ctx, doc)
    return {"updated": deleted}


# hyperparameters and configuration
class HyperParam(Item):
    section: Name | None = None
    name: Name


class HyperParams(TaskRef):
    hyperparams: Annotated[list[HyperParam], Field(max_length=MAX_ITEMS)] = []
    replace_hyperparams: Literal["none", "section", "all"] | None = None


@endpoint("tasks.edit_hyper_params")
@shaped(HyperParams)
def edit_hyper_params(ctx: Context, request: HyperParams) -> dict:
    doc = get_task(ctx, request.task)
    params = doc.get("hyperparams") or {}
    replace = request.replace_hyperparams or "none"
    if replace == "all":
        params = {}
    if replace == "section":
        for section in {p.section for p in request.hyperparams}:
            params.pop(section, None)
    for item in request.hyperparams:
        section = item.section or "General"
        params.setdefault(section, {})[item.name] = {**item.stored(), "section": section}
    doc["hyperparams"] = params
    save(ctx, doc)
    return {"updated": 1}


@endpoint("tasks.get_hyper_params", read_only=True)
@shaped(Tasks)
def get_hyper_params(ctx: Context, request: Tasks) -> dict:
    result = []
    for task_id in request.tasks:
        doc = get_task(ctx, task_id)
        flat = [item for section in (doc.get("hyperparams") or {}).values() for item in section.values()]
        result.append({"task": task_id, "hyperparams": flat})
    return {"params": result}


class HyperParamRef(Item):
    section: Name | None = None
    name: Name | None = None


class HyperParamRefs(TaskRef):
    hyperparams: Annotated[list[HyperParamRef], Field(max_length=MAX_ITEMS)] = []


@endpoint("tasks.delete_hyper_params")
@shaped(HyperParamRefs)
def delete_hyper_params(ctx: Context, request: HyperParamRefs) -> dict:
    doc = get_task(ctx, request.task)
    params = doc.get("hyperparams") or {}
    deleted = 0
    for item in request.hyperparams:
        section = params.get(item.section)
        if section is None:
            continue
        if item.name:
            deleted += section.pop(item.name, None) is not None
        else:
            deleted += len(params.pop(item.section))
    doc["hyperparams"] = params
    save(ctx, doc)
    return {"deleted": deleted}


class ConfigurationItem(Item):
    name: NonEmptyName


class Configuration(TaskRef):
    configuration: Annotated[list[ConfigurationItem], Field(max_length=MAX_ITEMS)] = []
    replace_configuration: bool | None = None


@endpoint("tasks.edit_configuration")
@shaped(Configuration)
def edit_configuration(ctx: Context, request: Configuration) -> dict:
    doc = get_task(ctx, request.task)
    config = {} if request.replace_configuration else (doc.get("configuration") or {})
    for item in request.configuration:
        config[item.name] = item.stored()
    doc["configuration"] = config
    save(ctx, doc)
    return {"updated": 1}


class ConfigurationQuery(Tasks):
    names: Names = []


@endpoint("tasks.get_configurations", read_only=True)
@shaped(ConfigurationQuery)
def get_configurations(ctx: Context, request: ConfigurationQuery) -> dict:
    names = set(request.names)
    result = []
    for task_id in request.tasks:
        config = get_task(ctx, task_id).get("configuration") or {}
        items = [v for k, v in config.items() if not names or k in names]
        result.append({"task": task_id, "configuration": items})
    return {"configurations": result}


@endpoint("tasks.get_configuration_names", read_only=True)
@shaped(Tasks)
def get_configuration_names(ctx: Context, request: Tasks) -> dict:
    result = []
    for task_id in request.tasks:
        result.append({"task": task_id, "names": sorted(get_task(ctx, task_id).get("configuration") or {})})
    return {"configurations": result}


class ConfigurationNames(TaskRef):
    configuration: Names = []


@endpoint("tasks.delete_configuration")
@shaped(ConfigurationNames)
def delete_configuration(ctx: Context, request: ConfigurationNames) -> dict:
    doc = get_task(ctx, request.task)
    config = doc.get("configuration") or {}
    deleted = sum(config.pop(name, None) is not None for name in request.configuration)
    save(ctx, doc)
    return {"deleted": deleted}


class Projects(Shape):
    projects: Ids | None = None


@endpoint("tasks.get_types", read_only=True)
@shaped(Projects)
def get_types(ctx: Context, request: Projects) -> dict:
    project_ids = request.projects
    return {"types": sorted(t for t in ctx.store.distinct("tasks", "type", project_ids or None) if t)}

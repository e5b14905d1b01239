"""queues.*: named FIFO queues of task ids; ``get_next_task`` pops atomically inside the store transaction.

Entries are kept in the store's ``queue_entries`` table and attached as ``entries`` when a queue is read.
"""

from __future__ import annotations

from ..errors import bad_request, invalid_queue, no_default_queue, not_unique
from ..query import QuerySpec, select
from . import Context, endpoint, new_id, now, require

SPEC = QuerySpec(
    list_fields=frozenset({"id", "user"}),
    pattern_fields=frozenset({"name"}),
    datetime_fields=frozenset({"created", "last_update"}),
    document_fields=frozenset(
        {"id", "name", "created", "last_update", "tags", "system_tags", "metadata", "user", "company", "entries"}
    ),
    entity="queue",
)


def create_queue(ctx: Context, name: str, tags=None, system_tags=None) -> dict:
    stamp = now()
    doc = {
        "id": new_id(),
        "name": name,
        "created": stamp,
        "last_update": stamp,
        "tags": list(tags or []),
        "system_tags": list(system_tags or []),
        "metadata": {},
        "user": ctx.user,
        "company": "",
    }
    ctx.store.put("queues", doc)
    return with_entries(ctx, doc)


def with_entries(ctx: Context, doc: dict) -> dict:
    return {**doc, "entries": ctx.store.queue_entries(doc["id"])}


def get_queue(ctx: Context, ref) -> dict:
    """A queue by id only: the SDK relies on a name being refused here before it searches by name."""
    if not isinstance(ref, str) or not ref:
        raise invalid_queue(ref)
    doc = ctx.store.get("queues", ref)
    if doc is None:
        raise invalid_queue(ref)
    return doc


def default_queue(ctx: Context) -> dict:
    found = select(ctx.store, "queues", {"system_tags": ["default"], "page_size": 1}, SPEC, hide_hidden=False)
    if not found:
        raise no_default_queue()
    return found[0]


def add_task(ctx: Context, queue_id: str, task_id: str) -> None:
    get_queue(ctx, queue_id)
    ctx.store.remove_queue_entry(queue_id, task_id)
    ctx.store.add_queue_entry(queue_id, task_id, now())


def remove_task(ctx: Context, queue_id: str, task_id: str) -> int:
    return ctx.store.remove_queue_entry(queue_id, task_id)


@endpoint("queues.create")
def create(ctx: Context, body: dict) -> dict:
    name = require(body, "name")
    if ctx.store.find_by_name("queues", name):
        raise not_unique(f"queue name {name!r} already exists")
    return {"id": create_queue(ctx, name, body.get("tags"), body.get("system_tags"))["id"]}


@endpoint("queues.get_by_id", read_only=True)
def get_by_id(ctx: Context, body: dict) -> dict:
    return {"queue": with_entries(ctx, get_queue(ctx, require(body, "queue")))}


@endpoint("queues.get_all", "queues.get_all_ex", read_only=True)
def get_all(ctx: Context, body: dict) -> dict:
    return {"queues": select(ctx.store, "queues", body, SPEC, decorate=lambda doc: with_entries(ctx, doc))}


@endpoint("queues.get_default", read_only=True)
def get_default(ctx: Context, body: dict) -> dict:
    doc = default_queue(ctx)
    return {"id": doc["id"], "name": doc["name"]}


@endpoint("queues.update")
def update(ctx: Context, body: dict) -> dict:
    doc = get_queue(ctx, require(body, "queue"))
    fields = {k: body[k] for k in ("name", "tags", "system_tags") if body.get(k) is not None}
    doc.update(fields, last_update=now())
    ctx.store.put("queues", doc)
    return {"updated": 1, "fields": fields}


@endpoint("queues.delete")
def delete(ctx: Context, body: dict) -> dict:
    doc = get_queue(ctx, require(body, "queue"))
    if ctx.store.queue_entries(doc["id"]) and not body.get("force"):
        raise bad_request(f"queue {doc['id']} is not empty (use force)")
    ctx.store.delete_queue_entries(doc["id"])
    ctx.store.delete("queues", doc["id"])
    return {"deleted": 1}


@endpoint("queues.get_next_task")
def get_next_task(ctx: Context, body: dict) -> dict:
    queue_id = get_queue(ctx, require(body, "queue"))["id"]
    while entry := ctx.store.pop_queue_entry(queue_id):
        task = ctx.store.get("tasks", entry["task"])
        if task is None or task.get("status") != "queued":
            continue  # stale entry: the task was deleted or dequeued elsewhere
        result = {"entry": entry}
        if body.get("get_task_info"):
            result["task_info"] = {"company": task.get("company", ""), "user": task.get("user")}
        return result
    return {}


@endpoint("queues.add_task")
def add_task_endpoint(ctx: Context, body: dict) -> dict:
    add_task(ctx, get_queue(ctx, require(body, "queue"))["id"], require(body, "task"))
    return {"added": 1}


@endpoint("queues.remove_task")
def remove_task_endpoint(ctx: Context, body: dict) -> dict:
    return {"removed": remove_task(ctx, get_queue(ctx, require(body, "queue"))["id"], require(body, "task"))}


def _move(ctx: Context, body: dict, position_of) -> dict:
    """Move a pending task within its queue to `position_of(index, count, last)`, clamped to the queue;
    ``position`` in the answer is its new 0-based place."""
    queue_id = get_queue(ctx, require(body, "queue"))["id"]
    task_id = require(body, "task")
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise bad_request(f"count must be a positive integer, not {count!r}")
    entries = ctx.store.queue_entries(queue_id)
    index = next((i for i, entry in enumerate(entries) if entry["task"] == task_id), None)
    if index is None:
        raise bad_request(f"task {task_id} is not in queue {queue_id}")
    last = len(entries) - 1
    position = max(0, min(position_of(index, count, last), last))
    if position != index:
        ctx.store.move_queue_entry(queue_id, index, position)
    return {"position": position}


@endpoint("queues.move_task_forward")
def move_task_forward(ctx: Context, body: dict) -> dict:
    return _move(ctx, body, lambda index, count, last: index - count)


@endpoint("queues.move_task_backward")
def move_task_backward(ctx: Context, body: dict) -> dict:
    return _move(ctx, body, lambda index, count, last: index + count)


@endpoint("queues.move_task_to_front")
def move_task_to_front(ctx: Context, body: dict) -> dict:
    return _move(ctx, body, lambda index, count, last: 0)


@endpoint("queues.move_task_to_back")
def move_task_to_back(ctx: Context, body: dict) -> dict:
    return _move(ctx, body, lambda index, count, last: last)


@endpoint("queues.peek_task", read_only=True)
def peek_task(ctx: Context, body: dict) -> dict:
    entries = ctx.store.queue_entries(get_queue(ctx, require(body, "queue"))["id"])
    return {"task": entries[0]["task"]} if entries else {}


@endpoint("queues.get_num_entries", read_only=True)
def get_num_entries(ctx: Context, body: dict) -> dict:
    return {"num": ctx.store.count_queue_entries(get_queue(ctx, require(body, "queue"))["id"])}


@endpoint("queues.get_queue_metrics", read_only=True)
def get_queue_metrics(ctx: Context, body: dict) -> dict:
    return {"queues": []}

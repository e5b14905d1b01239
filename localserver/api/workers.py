"""workers.*: agent registration and status reports (kept for inspection; no statistics are computed)."""

from __future__ import annotations

from . import Context, endpoint, id_list, now, require
from . import tasks as tasks_api


def _worker(ctx: Context, worker_id: str) -> dict:
    doc = ctx.store.get("workers", worker_id)
    if doc is None:
        stamp = now()
        doc = {"id": worker_id, "name": worker_id, "register_time": stamp, "last_activity_time": stamp}
        doc.update(user={"id": ctx.user, "name": ctx.user}, company={"id": "", "name": ""}, queues=[], tags=[])
    return doc


def _queue_entries(ctx: Context, queue_ids) -> list[dict]:
    entries = []
    for queue_id in id_list(queue_ids):
        queue = ctx.store.get("queues", queue_id)
        if queue:
            num_tasks = ctx.store.count_queue_entries(queue_id)
            entries.append({"id": queue_id, "name": queue["name"], "num_tasks": num_tasks})
    return entries


@endpoint("workers.register")
def register(ctx: Context, body: dict) -> dict:
    doc = _worker(ctx, require(body, "worker"))
    doc.update(queues=_queue_entries(ctx, body.get("queues")), tags=body.get("tags") or [], last_activity_time=now())
    ctx.store.put("workers", doc)
    return {}


@endpoint("workers.unregister")
def unregister(ctx: Context, body: dict) -> dict:
    ctx.store.delete("workers", require(body, "worker"))
    return {}


@endpoint("workers.status_report")
def status_report(ctx: Context, body: dict) -> dict:
    doc = _worker(ctx, require(body, "worker"))
    stamp = now()
    doc.update(last_activity_time=stamp, last_report_time=stamp)
    task = ctx.store.get("tasks", body.get("task") or "")
    doc["task"] = {"id": task["id"], "name": task["name"]} if task else None
    if task and task.get("status") == "in_progress":
        tasks_api.save(ctx, task, changed=False)  # the worker runs it: a sign of life for the watchdog
    if body.get("queues") is not None:
        doc["queues"] = _queue_entries(ctx, body["queues"])
    ctx.store.put("workers", doc)
    return {}


@endpoint("workers.get_all", read_only=True)
def get_all(ctx: Context, body: dict) -> dict:
    return {"workers": ctx.store.scan("workers")}


@endpoint("workers.get_runtime_properties", read_only=True)
def get_runtime_properties(ctx: Context, body: dict) -> dict:
    return {"runtime_properties": []}


@endpoint("workers.set_runtime_properties")
def set_runtime_properties(ctx: Context, body: dict) -> dict:
    return {"added": [], "removed": [], "errors": []}


@endpoint("workers.get_activity_report", "workers.get_stats", read_only=True)
def get_activity_report(ctx: Context, body: dict) -> dict:
    return {"workers": [], "total": [], "active": []}

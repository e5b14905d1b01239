"""events.*: stores logs, scalars, plots and debug images; keeps ``last_metrics``/``last_iteration`` current."""

from __future__ import annotations

import hashlib

from ..errors import bad_request
from . import Context, endpoint, id_list, require
from . import tasks as tasks_api

SCALAR = "training_stats_scalar"
KNOWN_TYPES = {"log", SCALAR, "training_stats_vector", "plot", "training_debug_image"}


def _metric_key(name: str) -> str:
    # The real server keys last_metrics by the md5 of the metric/variant names; the SDK only reads the values.
    return hashlib.md5(name.encode()).hexdigest()


def _update_last_metrics(task: dict, event: dict) -> None:
    iteration = event.get("iter") or 0
    task["last_iteration"] = max(task.get("last_iteration") or 0, iteration)
    value = event.get("value")
    if not isinstance(value, (int, float)):
        return
    metric, variant = str(event.get("metric", "")), str(event.get("variant", ""))
    entry = (
        task.setdefault("last_metrics", {})
        .setdefault(_metric_key(metric), {})
        .setdefault(_metric_key(variant), {"metric": metric, "variant": variant})
    )
    entry.update(value=value, iter=iteration, timestamp=event.get("timestamp"))
    if entry.get("min_value") is None or value < entry["min_value"]:
        entry.update(min_value=value, min_value_iteration=iteration)
    if entry.get("max_value") is None or value > entry["max_value"]:
        entry.update(max_value=value, max_value_iteration=iteration)


def add_events(ctx: Context, events: list[dict]) -> dict:
    tasks: dict[str, dict] = {}
    stored = []
    for event in events:
        if not isinstance(event, dict):
            raise bad_request("each event must be a JSON object")
        event = {k: v for k, v in event.items() if k != "method"}
        task_id = require(event, "task")
        if event.get("type") not in KNOWN_TYPES:
            raise bad_request(f"unknown event type {event.get('type')!r}")
        if not event.get("model_event"):  # model events carry a model id in "task"
            if task_id not in tasks:
                tasks[task_id] = tasks_api.get_task(ctx, task_id)
            if event["type"] == SCALAR:
                _update_last_metrics(tasks[task_id], event)
        stored.append(event)
    ctx.store.add_events(stored)
    for task in tasks.values():
        tasks_api.save(ctx, task, changed=False)
    return {"added": len(stored), "errors": 0, "errors_info": {}}


@endpoint("events.add_batch")
def add_batch(ctx: Context, body: dict) -> dict:
    return add_events(ctx, body.get("requests") or [])


@endpoint("events.add")
def add(ctx: Context, body: dict) -> dict:
    add_events(ctx, [body])
    return {}


def _task_events(ctx: Context, body: dict, types: list[str]) -> list[dict]:
    task_ids = id_list(body.get("task")) or id_list(body.get("tasks"))
    if not task_ids:
        raise bad_request("missing task")
    for task_id in task_ids:
        tasks_api.get_task(ctx, task_id)
    events = ctx.store.events(task_ids, types)
    metrics = body.get("metrics")
    if metrics:
        wanted = {m.get("metric") if isinstance(m, dict) else m for m in metrics}
        events = [e for e in events if e.get("metric") in wanted]
    return events


def _scroll(events: list[dict], body: dict) -> dict:
    if body.get("order") == "desc":
        events = events[::-1]
    start = int(body["scroll_id"]) if str(body.get("scroll_id") or "").isdigit() else 0
    size = body.get("batch_size") or 500
    batch = events[start : start + size]
    return {"events": batch, "returned": len(batch), "total": len(events), "scroll_id": str(start + len(batch))}


@endpoint("events.get_task_log")
def get_task_log(ctx: Context, body: dict) -> dict:
    events = _task_events(ctx, body, ["log"])
    size = body.get("batch_size") or 500
    # navigate_earlier (the default) returns the newest lines; they are always listed oldest first.
    batch = events[-size:] if body.get("navigate_earlier", True) else events[:size]
    if body.get("order") == "desc":
        batch = batch[::-1]
    return {"events": batch, "returned": len(batch), "total": len(events)}


@endpoint("events.get_task_events")
def get_task_events(ctx: Context, body: dict) -> dict:
    event_type = body.get("event_type")
    return _scroll(_task_events(ctx, body, [event_type] if event_type else []), body)


@endpoint("events.get_task_plots")
def get_task_plots(ctx: Context, body: dict) -> dict:
    result = _scroll(_task_events(ctx, body, ["plot"]), body)
    return {"plots": result["events"], **{k: v for k, v in result.items() if k != "events"}}


@endpoint("events.debug_images", "events.get_debug_image_sample")
def debug_images(ctx: Context, body: dict) -> dict:
    task_ids = [m.get("task") for m in body.get("metrics") or [] if isinstance(m, dict)] or id_list(body.get("task"))
    images = ctx.store.events(task_ids, ["training_debug_image"]) if task_ids else []
    return {
        "metrics": [{"task": t, "iterations": [{"events": [e for e in images if e["task"] == t]}]} for t in task_ids]
    }


@endpoint("events.scalar_metrics_iter_histogram")
def scalar_metrics_iter_histogram(ctx: Context, body: dict) -> dict:
    key = body.get("key") or "iter"
    series: dict = {}
    for event in _task_events(ctx, body, [SCALAR]):
        item = series.setdefault(event.get("metric"), {}).setdefault(
            event.get("variant"), {"name": event.get("variant"), "x": [], "y": []}
        )
        item["x"].append(event.get("timestamp") if key == "timestamp" else event.get("iter"))
        item["y"].append(event.get("value"))
    return series


@endpoint("events.get_task_single_value_metrics")
def get_task_single_value_metrics(ctx: Context, body: dict) -> dict:
    result = []
    for task_id in id_list(body.get("tasks")):
        values = [e for e in _task_events(ctx, {"task": task_id}, [SCALAR]) if e.get("iter") == -(2**31)]
        result.append({"task": task_id, "values": values})
    return {"tasks": result}


@endpoint("events.get_task_metrics")
def get_task_metrics(ctx: Context, body: dict) -> dict:
    result = []
    for task_id in id_list(body.get("tasks")):
        events = _task_events(ctx, {"task": task_id}, [body.get("event_type") or SCALAR])
        result.append({"task": task_id, "metrics": sorted({e.get("metric") for e in events if e.get("metric")})})
    return {"metrics": result}


@endpoint("events.get_task_latest_scalar_values")
def get_task_latest_scalar_values(ctx: Context, body: dict) -> dict:
    task = tasks_api.get_task(ctx, require(body, "task"))
    metrics: dict = {}
    for variants in (task.get("last_metrics") or {}).values():
        for entry in variants.values():
            metrics.setdefault(entry["metric"], []).append(
                {"name": entry["variant"], "last_value": entry.get("value"), "last_100_value": entry.get("value")}
            )
    return {"metrics": [{"name": name, "variants": items} for name, items in metrics.items()]}


@endpoint("events.delete_for_task")
def delete_for_task(ctx: Context, body: dict) -> dict:
    tasks_api.get_task(ctx, require(body, "task"))
    ctx.store.delete_events(body["task"])
    return {"deleted": True}

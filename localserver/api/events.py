"""events.*: stores logs, scalars, plots and debug images; keeps ``last_metrics``/``last_iteration`` current."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from datetime import datetime, timezone

import orjson

from ..errors import bad_request
from ..store import SCALAR
from . import Context, Encoded, ResultCache, endpoint, id_list, require
from . import tasks as tasks_api

# Points per series of scalar_metrics_iter_histogram: the SDK documents at most 5,000 (get_reported_scalars);
# longer series are averaged over buckets of iterations, as the real server downsamples.
MAX_SAMPLES = 5000
SINGLE_VALUE_ITER = -(2**31)  # the iteration of the SDK's report_single_value
# Debug-image iterations per metric in one page when the request gives no ``iters`` (the SDK's
# MAX_SERIES_PER_METRIC default), and at most.
DEFAULT_IMAGE_ITERATIONS = 100
MAX_IMAGE_ITERATIONS = 1000
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


@endpoint("events.get_task_log", read_only=True)
def get_task_log(ctx: Context, body: dict) -> dict:
    events = _task_events(ctx, body, ["log"])
    size = body.get("batch_size") or 500
    # navigate_earlier (the default) returns the newest lines; they are always listed oldest first.
    batch = events[-size:] if body.get("navigate_earlier", True) else events[:size]
    if body.get("order") == "desc":
        batch = batch[::-1]
    return {"events": batch, "returned": len(batch), "total": len(events)}


@endpoint("events.get_task_events", read_only=True)
def get_task_events(ctx: Context, body: dict) -> dict:
    event_type = body.get("event_type")
    return _scroll(_task_events(ctx, body, [event_type] if event_type else []), body)


@endpoint("events.get_task_plots", read_only=True)
def get_task_plots(ctx: Context, body: dict) -> dict:
    result = _scroll(_task_events(ctx, body, ["plot"]), body)
    return {"plots": result["events"], **{k: v for k, v in result.items() if k != "events"}}


@endpoint("events.debug_images", read_only=True)
def debug_images(ctx: Context, body: dict) -> dict:
    """Debug images per task and metric (``metrics: [{task, metric, variants}]``), grouped by iteration: each
    page holds up to ``iters`` iterations, newest first unless ``navigate_earlier`` is false; ``scroll_id``
    continues from the previous page and an exhausted metric answers no iterations. Of an image reported twice
    for one variant and iteration, the last one is kept."""
    requested = _image_metrics(body)
    iters = body.get("iters") or DEFAULT_IMAGE_ITERATIONS
    if not isinstance(iters, int) or isinstance(iters, bool) or not 0 < iters <= MAX_IMAGE_ITERATIONS:
        raise bad_request(f"iters must be an integer from 1 to {MAX_IMAGE_ITERATIONS}")
    desc = body.get("navigate_earlier", True) is not False
    positions = {} if body.get("refresh") else _decode_scroll(body.get("scroll_id"))
    result = []
    for task_id, metric, variants in requested:
        tasks_api.get_task(ctx, task_id)
        key = f"{task_id}/{metric}"
        iterations = ctx.store.series_iterations(
            task_id, "training_debug_image", metric, variants, positions.get(key), iters, desc
        )
        if iterations:
            positions[key] = iterations[-1]
        events = ctx.store.iteration_events(task_id, "training_debug_image", metric, variants, iterations)
        by_iteration = {i: [e for e in events if e.get("iter") == i] for i in iterations}
        result.append(
            {
                "task": task_id,
                "metric": metric,
                "iterations": [{"iter": i, "events": by_iteration[i]} for i in iterations],
            }
        )
    return {"metrics": result, "scroll_id": _encode_scroll(positions)}


def _image_metrics(body: dict) -> list[tuple[str, str | None, list[str]]]:
    metrics = body.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise bad_request("metrics: a list of {task, metric, variants} is required")
    requested = []
    for item in metrics[:100]:
        if not isinstance(item, dict) or not isinstance(item.get("task"), str):
            raise bad_request("each metrics item needs a task id")
        variants = [v for v in item.get("variants") or [] if isinstance(v, str)]
        requested.append((item["task"], item.get("metric"), variants))
    return requested


def _encode_scroll(positions: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(positions).encode()).decode()


def _decode_scroll(scroll_id) -> dict:
    """The last iteration returned per ``task/metric``; a missing or foreign scroll id starts from the top."""
    if not isinstance(scroll_id, str) or not scroll_id or len(scroll_id) > 100_000:
        return {}
    try:
        positions = json.loads(base64.urlsafe_b64decode(scroll_id.encode()))
    except (binascii.Error, ValueError):
        return {}
    if not isinstance(positions, dict):
        return {}
    return {k: v for k, v in positions.items() if isinstance(k, str) and isinstance(v, int)}


@endpoint("events.scalar_metrics_iter_histogram", read_only=True)
def scalar_metrics_iter_histogram(ctx: Context, body: dict) -> dict:
    """``{metric: {variant: {name, x, y}}}``; each series holds at most ``samples`` points (default and at most
    MAX_SAMPLES): a longer one is averaged over equal buckets of its x axis (iter, timestamp or iso_time).
    Answers are cached until the task's scalars change: charts are polled, often by several viewers."""
    task_id = require(body, "task")
    if not isinstance(task_id, str):
        raise bad_request("task must be one task id")
    tasks_api.get_task(ctx, task_id)
    key = body.get("key") or "iter"
    if key not in ("iter", "timestamp", "iso_time"):
        raise bad_request("key must be iter, timestamp or iso_time")
    samples = body.get("samples") or MAX_SAMPLES
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise bad_request("samples must be a positive integer")
    samples = min(samples, MAX_SAMPLES)
    metrics = _metric_filter(body.get("metrics"))

    def compute() -> Encoded:
        series = _histogram(ctx, task_id, key, samples, metrics)
        return Encoded(series, _encode_series(series))

    wanted = json.dumps(metrics, sort_keys=True)
    if len(wanted) > ResultCache.KEY_BYTES // 2:
        return compute()
    return ctx.server.histograms.get(
        (task_id, ctx.store.events_version(task_id, SCALAR), key, samples, wanted), compute
    )


def _histogram(ctx: Context, task_id: str, key: str, samples: int, metrics: dict[str, list[str]] | None) -> dict:
    column = "iter" if key == "iter" else "timestamp"
    series: dict = {}
    for metric, variant, count, low, high in ctx.store.series_stats(task_id, SCALAR, metrics, column):
        interval = 1
        if count > samples and low is not None and high is not None:
            interval = max(1, math.ceil((high - low + 1) / samples))
        points = ctx.store.scalar_points(task_id, metric, variant, column, interval)
        xs = [x for x, _ in points]
        if key == "iso_time":
            xs = [datetime.fromtimestamp(x / 1000, timezone.utc).isoformat() if x is not None else None for x in xs]
        series.setdefault(metric, {})[variant] = {"name": variant, "x": xs, "y": [y for _, y in points]}
    return series


def _encode_series(series: dict) -> bytes:
    """orjson, 20 times faster on long series, writes an infinite value as null where the standard library
    writes Infinity, which the SDK reads back; a NaN is never among them (SQLite stores it as NULL)."""
    values = (line["y"] for variants in series.values() for line in variants.values())
    if any(math.inf in y or -math.inf in y for y in values):
        return json.dumps(series).encode()
    return orjson.dumps(series)


def _metric_filter(metrics) -> dict[str, list[str]] | None:
    if not metrics:
        return None
    if not isinstance(metrics, list):
        raise bad_request("metrics must be a list of {metric, variants}")
    wanted: dict[str, list[str]] = {}
    for item in metrics:
        if isinstance(item, dict) and isinstance(item.get("metric"), str):
            wanted.setdefault(item["metric"], []).extend(v for v in item.get("variants") or [] if isinstance(v, str))
        elif isinstance(item, str):
            wanted.setdefault(item, [])
    return wanted or None


@endpoint("events.get_task_single_value_metrics", read_only=True)
def get_task_single_value_metrics(ctx: Context, body: dict) -> dict:
    result = []
    for task_id in id_list(body.get("tasks")):
        values = [e for e in _task_events(ctx, {"task": task_id}, [SCALAR]) if e.get("iter") == SINGLE_VALUE_ITER]
        result.append({"task": task_id, "values": values})
    return {"tasks": result}


@endpoint("events.get_task_metrics", read_only=True)
def get_task_metrics(ctx: Context, body: dict) -> dict:
    result = []
    for task_id in id_list(body.get("tasks")):
        events = _task_events(ctx, {"task": task_id}, [body.get("event_type") or SCALAR])
        result.append({"task": task_id, "metrics": sorted({e.get("metric") for e in events if e.get("metric")})})
    return {"metrics": result}


@endpoint("events.get_task_latest_scalar_values", read_only=True)
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

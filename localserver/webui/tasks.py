"""Projects, the tasks table, the task page and its tabs, task actions, compare, and their JSON data routes."""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import quote

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..api.events import SINGLE_VALUE_ITER
from .core import Invalid, NotFound, View, WebUI, bounded_int, choice, task_url, text_field
from .lookups import get_project, get_task, owner_name, project_names, user_names

STATUSES = ("created", "queued", "in_progress", "stopped", "completed", "failed", "published", "closed")
TYPES = (
    "training",
    "testing",
    "inference",
    "data_processing",
    "application",
    "monitor",
    "controller",
    "optimizer",
    "service",
    "qc",
    "custom",
)
SORTS = ("name", "status", "type", "created", "started", "last_update", "last_iteration")
PAGE_SIZES = (25, 50, 100, 200)
TABLE_FIELDS = [
    "id",
    "name",
    "status",
    "type",
    "tags",
    "system_tags",
    "project",
    "created",
    "started",
    "last_update",
    "last_iteration",
    "last_metrics",
    "status_message",
    "user",
]
# (URL tab, title): the URL names are the official UI's, so links written for it land on the same tab.
TABS = (
    ("execution", "Execution"),
    ("hyper-params", "Configuration"),
    ("artifacts", "Artifacts"),
    ("info-output", "Info"),
    ("output/log", "Console"),
    ("output/metrics/scalar", "Scalars"),
    ("output/metrics/plots", "Plots"),
    ("output/debugImages", "Debug samples"),
)
ACTIONS = ("clone", "edit-params", "enqueue", "dequeue", "abort", "reset", "archive", "restore", "publish", "tags")
MAX_METRIC_COLUMNS = 6
MAX_LOG_LINES = 50_000
MAX_PLOTS = 200
MAX_COMPARE = 10
SCALAR_SAMPLES = 2000


def metric_columns(tasks: list[dict]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for task in tasks:
        for variants in (task.get("last_metrics") or {}).values():
            for entry in variants.values():
                if isinstance(entry, dict) and "metric" in entry:
                    seen.setdefault((entry["metric"], entry.get("variant", "")), None)
    return sorted(seen)


def last_value(task: dict, metric: str, variant: str):
    for variants in (task.get("last_metrics") or {}).values():
        for entry in variants.values():
            if isinstance(entry, dict) and entry.get("metric") == metric and entry.get("variant") == variant:
                return entry.get("value")
    return None


# pages
def home(view: View):
    return view.redirect("/projects")


def projects_page(view: View):
    show_hidden = view.query.get("hidden") == "1"
    projects = view.api("projects.get_all", {"search_hidden": show_hidden, "order_by": ["name"]})["projects"]
    rows = [{**p, "depth": p["name"].count("/")} for p in projects]
    return view.render("projects.html", projects=rows, show_hidden=show_hidden)


def project_page(view: View):
    return view.redirect(f"/projects/{view.path['project']}/tasks")


def table_filters(view: View) -> dict:
    """The table's query string, validated; kept in every link so navigation never loses a filter."""
    query = view.query
    statuses = [choice(s, STATUSES, None, "status") for s in query.getlist("status") if s]
    task_type = choice(query.get("type"), TYPES, "", "task type")
    sort = query.get("sort") or "-last_update"
    choice(sort.lstrip("-"), SORTS, "last_update", "sort column")
    columns = [c for c in query.getlist("col") if c][:MAX_METRIC_COLUMNS]
    for column in columns:
        if "/" not in column or len(column) > 300:
            raise Invalid(f"A metric column is written metric/variant, not {column!r}.")
    name = (query.get("name") or "").strip()
    tag = (query.get("tag") or "").strip()
    owner = (query.get("owner") or "").strip()
    if len(name) > 200 or len(tag) > 200 or len(owner) > 200:
        raise Invalid("Name, tag and owner filters are at most 200 characters.")
    return {
        "owner": owner,
        "status": statuses,
        "type": task_type,
        "tag": tag,
        "name": name,
        "sort": sort,
        "page": bounded_int(query.get("page"), 0, 100_000, 0, "page"),
        "size": bounded_int(query.get("size"), 1, PAGE_SIZES[-1], PAGE_SIZES[1], "page size"),
        "archived": query.get("archived") == "1",
        "hidden": query.get("hidden") == "1",
        "col": columns,
    }


def filters_query(filters: dict, **changes) -> str:
    merged = {**filters, **changes}
    pairs = [("status", s) for s in merged["status"]]
    pairs += [(k, merged[k]) for k in ("owner", "type", "tag", "name", "sort") if merged[k]]
    pairs += [("page", merged["page"])] if merged["page"] else []
    pairs += [("size", merged["size"])] if merged["size"] != PAGE_SIZES[1] else []
    pairs += [(k, "1") for k in ("archived", "hidden") if merged[k]]
    pairs += [("col", c) for c in merged["col"]]
    return "&".join(f"{k}={_quote(str(v))}" for k, v in pairs)


def _quote(value: str) -> str:
    return quote(value, safe="")


def tasks_query(project: dict | None, filters: dict) -> dict:
    body: dict = {
        "only_fields": TABLE_FIELDS,
        "order_by": [filters["sort"]],
        "page": filters["page"],
        "page_size": filters["size"],
        "system_tags": ["__$all", "archived"] if filters["archived"] else ["-archived"],
    }
    if project is not None:
        body["project"] = [project["id"]]
    if filters["status"]:
        body["status"] = filters["status"]
    if filters["type"]:
        body["type"] = [filters["type"]]
    if filters["tag"]:
        body["tags"] = [filters["tag"]]
    if filters["name"]:
        body["name"] = re.escape(filters["name"])
    if filters["owner"]:
        body["user"] = [filters["owner"]]
    hidden_project = project is not None and "/." in f"/{project['name']}"
    if filters["hidden"] or hidden_project:
        body["search_hidden"] = True
    return body


def tasks_page(view: View):
    project = get_project(view, view.path["project"])
    filters = table_filters(view)
    owners = user_names(view)
    if filters["owner"] and filters["owner"] not in owners:
        raise Invalid(f"No user with id {filters['owner']!r}.")
    query = tasks_query(project, filters)
    tasks = view.api("tasks.get_all", query)["tasks"]
    total = filters["page"] * filters["size"] + len(tasks)
    if len(tasks) == filters["size"] or filters["page"]:  # more pages than this one: count them all
        total = tasks_total(view, query)
    available = metric_columns(tasks)
    chosen = [tuple(c.split("/", 1)) for c in filters["col"]] or available[:3]
    rows = [{**t, "metrics": [last_value(t, m, v) for m, v in chosen]} for t in tasks]
    children = []
    if project is not None:
        children = view.api(
            "projects.get_all", {"parent": [project["id"]], "search_hidden": True, "order_by": ["name"]}
        )["projects"]
    return view.render(
        "tasks.html",
        project=project,
        project_id=view.path["project"],
        children=children,
        tasks=rows,
        owners=owners,
        me=view.user,
        filters=filters,
        query=lambda **changes: filters_query(filters, **changes),
        statuses=STATUSES,
        types=TYPES,
        sorts=SORTS,
        page_sizes=PAGE_SIZES,
        columns=chosen,
        available_columns=available,
        total=total,
        first=filters["page"] * filters["size"] + 1,
        has_next=filters["page"] * filters["size"] + len(tasks) < total,
    )


def tasks_total(view: View, query: dict) -> int:
    """How many tasks the table's filters match, on every page (the API's get_all has no total: ids only)."""
    unpaged = {key: value for key, value in query.items() if key not in ("page", "page_size", "order_by")}
    return len(view.api("tasks.get_all", {**unpaged, "only_fields": ["id"]})["tasks"])


def tab_of(tab_path: str) -> str:
    for name, _ in TABS:
        if tab_path == name or tab_path.startswith(name + "/"):
            return name
    if tab_path.startswith("output"):
        return "output/log"
    return "execution"


def task_page(view: View):
    task = get_task(view, view.path["task"])
    tab = tab_of(view.path.get("tab") or "")
    names = project_names(view)
    context: dict = {}
    if tab == "execution":
        context["queue_name"] = queue_name(view, (task.get("execution") or {}).get("queue"))
    elif tab == "output/log":
        context.update(console(view, task))
    elif tab == "output/metrics/scalar":
        context["single_values"] = single_values(view, task["id"])
    elif tab == "output/metrics/plots":
        context["plots"] = latest_plots(view, task["id"])
    elif tab == "output/debugImages":
        context.update(debug_samples(view, task["id"]))
    elif tab == "info-output":
        context["owner"] = owner_name(view, task)
    elif tab == "artifacts":
        context["artifacts"] = (task.get("execution") or {}).get("artifacts") or []
        context["models"] = model_rows(view, task)
    queues = view.api("queues.get_all", {"only_fields": ["id", "name"], "order_by": ["name"]})["queues"]
    return view.render(
        "task.html",
        task=task,
        tab=tab,
        tabs=TABS,
        project_name=names.get(task.get("project") or "", ""),
        projects=sorted(names.items(), key=lambda item: item[1]),
        queues=queues,
        hyperparams=hyperparam_sections(task),
        user_properties=((task.get("hyperparams") or {}).get("properties") or {}),
        **context,
    )


def hyperparam_sections(task: dict) -> list[tuple[str, list[dict]]]:
    sections = task.get("hyperparams") or {}
    return [
        (section, [sections[section][name] for name in sorted(sections[section])])
        for section in sorted(sections)
        if section != "properties"
    ]


def queue_name(view: View, queue_id: str | None) -> str:
    if not queue_id:
        return ""
    found = view.api("queues.get_all", {"id": [queue_id], "only_fields": ["name"]})["queues"]
    return found[0]["name"] if found else queue_id


def model_rows(view: View, task: dict) -> list[dict]:
    refs = [(kind, ref) for kind in ("input", "output") for ref in (task.get("models") or {}).get(kind) or []]
    ids = [ref.get("model") for _, ref in refs if ref.get("model")]
    models = {}
    if ids:
        found = view.api("models.get_all", {"id": ids, "only_fields": ["id", "name", "ready", "tags", "uri"]})
        models = {m["id"]: m for m in found["models"]}
    return [{"kind": kind, "name": ref.get("name"), "model": models.get(ref.get("model"), {})} for kind, ref in refs]


def console(view: View, task: dict) -> dict:
    lines = bounded_int(view.query.get("lines"), 1, MAX_LOG_LINES, 1000, "lines")
    search = (view.query.get("q") or "").strip()[:200]
    # A search looks through the whole (bounded) log, not only the tail on screen.
    batch = MAX_LOG_LINES if search else lines
    result = view.api("events.get_task_log", {"task": task["id"], "batch_size": batch})
    events = result["events"]
    if search:
        needle = search.lower()
        events = [e for e in events if needle in str(e.get("msg", "")).lower()][-lines:]
    return {"log": events, "log_total": result.get("total", len(events)), "lines": lines, "search": search}


def latest_plots(view: View, task_id: str) -> list[dict]:
    """The newest figure of each metric/variant, as the SDK reported it (plotly JSON)."""
    events = view.api("events.get_task_plots", {"task": task_id, "batch_size": 10_000})["plots"]
    latest: dict = {}
    for event in events:
        latest[(event.get("metric"), event.get("variant"))] = event
    plots = []
    for (metric, variant), event in sorted(latest.items(), key=lambda item: (str(item[0][0]), str(item[0][1]))):
        try:
            figure = json.loads(event.get("plot_str") or "{}")
        except ValueError:
            figure = {"data": [], "layout": {"title": "unreadable figure"}}
        plots.append({"metric": metric, "variant": variant, "iter": event.get("iter"), "figure": figure})
    return plots[:MAX_PLOTS]


DEBUG_ITERATIONS = 5
MAX_DEBUG_ITERATIONS = 1000  # the most iterations events.debug_images returns in one page


def debug_samples(view: View, task_id: str) -> dict:
    """Images by metric/variant, newest iterations first; ``older`` skips that many iterations of each metric."""
    older = bounded_int(view.query.get("older"), 0, MAX_DEBUG_ITERATIONS - DEBUG_ITERATIONS - 1, 0, "older")
    names = view.api("events.get_task_metrics", {"tasks": [task_id], "event_type": "training_debug_image"})
    metrics = [m for item in names["metrics"] for m in item.get("metrics") or []]
    groups: dict = {}
    if metrics:
        body = {"metrics": [{"task": task_id, "metric": m} for m in metrics], "iters": older + DEBUG_ITERATIONS + 1}
        for item in view.api("events.debug_images", body)["metrics"]:
            for iteration in item.get("iterations") or []:
                for event in iteration.get("events") or []:
                    groups.setdefault((event.get("metric"), event.get("variant")), {})[event.get("iter")] = event
    samples = []
    more = False
    for (metric, variant), by_iter in sorted(groups.items(), key=lambda item: (str(item[0][0]), str(item[0][1]))):
        iterations = sorted(by_iter, key=lambda i: i or 0, reverse=True)
        more = more or len(iterations) > older + DEBUG_ITERATIONS
        shown = [by_iter[i] for i in iterations[older : older + DEBUG_ITERATIONS]]
        samples.append({"metric": metric, "variant": variant, "events": shown})
    return {"samples": samples, "older": older, "more": more, "page_iterations": DEBUG_ITERATIONS}


# actions
def task_action(view: View):
    task = get_task(view, view.path["task"], only_fields=["id", "project", "status", "tags", "hyperparams"])
    action = choice(view.path["action"], ACTIONS, None, "action")
    task_id = task["id"]
    if action == "clone":
        name = text_field(view.form, "name", "The new task's name")
        body = {"task": task_id, "new_task_name": name}
        project = text_field(view.form, "project", "Project", required=False)
        if project:
            body["new_task_project"] = project
        new_id = view.api("tasks.clone", body)["id"]
        return view.redirect(task_url(get_task(view, new_id, ["id", "project"]), "hyper-params"))
    if action == "edit-params":
        view.api("tasks.edit", {"task": task_id, "hyperparams": edited_hyperparams(task, view.form)})
        return view.redirect(task_url(task, "hyper-params"))
    if action == "enqueue":
        queue = text_field(view.form, "queue", "Queue")
        view.api("tasks.enqueue", {"task": task_id, "queue": queue})
    elif action == "dequeue":
        view.api("tasks.dequeue", {"task": task_id})
    elif action == "abort":
        view.api("tasks.stop", {"task": task_id})
    elif action == "reset":
        view.api("tasks.reset", {"task": task_id})
    elif action in ("archive", "restore"):
        result = view.api("tasks.archive_many" if action == "archive" else "tasks.unarchive_many", {"ids": [task_id]})
        if result["failed"]:
            raise Invalid(result["failed"][0]["error"]["msg"])
    elif action == "publish":
        view.api("tasks.publish", {"task": task_id})
    elif action == "tags":
        view.api("tasks.update", {"task": task_id, "tags": edited_tags(task, view.form)})
    return view.redirect(view.form.get("back") if _is_task_path(view.form.get("back")) else task_url(task))


def _is_task_path(value) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"/projects/[\w*-]+/tasks/\w+(/[\w/-]*)?", value))


def edited_tags(task: dict, form: dict) -> list[str]:
    tags = list(task.get("tags") or [])
    add = text_field(form, "add", "Tag", required=False, max_chars=100)
    remove = text_field(form, "remove", "Tag", required=False, max_chars=100)
    if not add and not remove:
        raise Invalid("Give a tag to add or to remove.")
    if add:
        if any(ch in add for ch in ",\n\r\t"):
            raise Invalid("A tag cannot contain commas, tabs or line breaks.")
        if add not in tags:
            tags.append(add)
    if remove:
        if remove not in tags:
            raise Invalid(f"The task has no tag {remove!r}.")
        tags.remove(remove)
    return tags


def edited_hyperparams(task: dict, form: dict) -> dict:
    """The task's hyperparameters with the form's ``param:<section>/<name>`` values; unknown names refused."""
    params = json.loads(json.dumps(task.get("hyperparams") or {}))
    changed = 0
    for key, value in form.items():
        if not key.startswith("param:"):
            continue
        section, _, name = key[len("param:") :].partition("/")
        if section not in params or name not in params[section]:
            raise Invalid(f"The task has no parameter {section}/{name}.")
        if isinstance(value, list):
            raise Invalid(f"The parameter {section}/{name} was given more than once.")
        if params[section][name].get("value") != value:
            params[section][name]["value"] = value
            changed += 1
    new_name = text_field(form, "new_name", "New parameter name", required=False, max_chars=200)
    if new_name:
        section, _, name = new_name.partition("/")
        if not section or not name or not re.fullmatch(r"[\w.\- ]+", section):
            raise Invalid("A new parameter is written Section/name, e.g. General/epochs.")
        params.setdefault(section, {})[name] = {
            "section": section,
            "name": name,
            "value": text_field(form, "new_value", "New parameter value", required=False, max_chars=10_000),
            "type": "str",
        }
        changed += 1
    if not changed:
        raise Invalid("Nothing to change: no parameter value differs from the task's.")
    return params


# compare
def compare_ids(view: View) -> list[str]:
    ids = []
    for value in view.query.getlist("ids"):
        ids += [v for v in value.replace(" ", ",").split(",") if v]
    ids = list(dict.fromkeys(ids))
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise Invalid(f"Compare takes 2 to {MAX_COMPARE} task ids (got {len(ids)}).")
    for task_id in ids:
        if not re.fullmatch(r"[\w-]{1,64}", task_id):
            raise Invalid(f"Not a task id: {task_id!r}.")
    return ids


def compare_page(view: View):
    if not view.query.getlist("ids"):
        return view.render("compare.html", tasks=[], rows=[], metrics=[])
    ids = compare_ids(view)
    found = {t["id"]: t for t in view.api("tasks.get_all", {"id": ids, "search_hidden": True})["tasks"]}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"No task with id {missing[0]!r}.")
    tasks = [found[i] for i in ids]
    keys = sorted(
        {(s, n) for t in tasks for s, items in (t.get("hyperparams") or {}).items() for n in items},
    )
    rows = []
    for section, name in keys:
        values = [((t.get("hyperparams") or {}).get(section) or {}).get(name, {}).get("value") for t in tasks]
        rows.append({"key": f"{section}/{name}", "cells": values, "differs": len({json.dumps(v) for v in values}) > 1})
    metric_keys = sorted({key for t in tasks for key in metric_columns([t])})
    metrics = []
    for metric, variant in metric_keys:
        values = [last_value(t, metric, variant) for t in tasks]
        metrics.append({"key": f"{metric}/{variant}", "cells": values, "differs": len(set(map(str, values))) > 1})
    return view.render("compare.html", tasks=tasks, rows=rows, metrics=metrics)


# JSON data for the pages' scripts
def status_json(view: View):
    ids = [i for i in (view.query.get("ids") or "").split(",") if i][:500]
    if not ids:
        return JSONResponse({})
    fields = ["id", "status", "last_iteration", "last_update", "status_message"]
    tasks = view.api("tasks.get_all", {"id": ids, "only_fields": fields, "search_hidden": True})["tasks"]
    return JSONResponse({t["id"]: t for t in tasks})


def scalars(view: View, task_id: str, samples: int | None) -> dict:
    x_axis = choice(view.query.get("x"), ("iter", "timestamp"), "iter", "x axis")
    get_task(view, task_id, only_fields=["id"])
    body = {"task": task_id, "key": x_axis}
    if samples:
        body["samples"] = samples
    return view.api("events.scalar_metrics_iter_histogram", body)


def single_values(view: View, task_id: str) -> list[dict]:
    """The values the SDK reports with ``report_single_value`` (iteration ``SINGLE_VALUE_ITER``), by metric."""
    found = view.api("events.get_task_single_value_metrics", {"tasks": [task_id]})["tasks"]
    values = found[0]["values"] if found else []
    return sorted(values, key=lambda event: (str(event.get("metric")), str(event.get("variant"))))


def without_single_values(series: dict, x_axis: str, values: list[dict]) -> dict:
    """The charts' series less the single values, which are no series (the page shows them as a table): by
    iteration, their points at ``SINGLE_VALUE_ITER``; by time, the series that hold nothing else."""
    counts: dict[tuple[str, str], int] = {}
    for event in values:
        key = (event.get("metric"), event.get("variant"))
        counts[key] = counts.get(key, 0) + 1
    charts: dict = {}
    for metric, variants in series.items():
        for variant, line in variants.items():
            points = list(zip(line.get("x") or [], line.get("y") or [], strict=False))
            if x_axis == "iter":
                points = [(x, y) for x, y in points if x != SINGLE_VALUE_ITER]
            elif len(points) <= counts.get((metric, variant), 0):
                points = []
            if points:
                xs, ys = zip(*points, strict=True)
                charts.setdefault(metric, {})[variant] = {**line, "x": list(xs), "y": list(ys)}
    return charts


def scalars_json(view: View):
    """The charts' series (single values left out: the scalars tab shows them as a table)."""
    samples = bounded_int(view.query.get("samples"), 10, 100_000, SCALAR_SAMPLES, "samples")
    task_id = view.path["task"]
    series = scalars(view, task_id, samples)
    return JSONResponse(without_single_values(series, view.query.get("x") or "iter", single_values(view, task_id)))


def scalars_csv(view: View):
    data = scalars(view, view.path["task"], None)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "variant", view.query.get("x") or "iter", "value"])
    for metric, variants in sorted(data.items(), key=lambda item: str(item[0])):
        for variant, series in sorted(variants.items(), key=lambda item: str(item[0])):
            for x, y in zip(series.get("x") or [], series.get("y") or [], strict=False):
                writer.writerow([metric, variant, x, y])
    headers = {"Content-Disposition": f'attachment; filename="scalars-{view.path["task"]}.csv"'}
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


def log_json(view: View):
    get_task(view, view.path["task"], only_fields=["id"])
    lines = bounded_int(view.query.get("lines"), 1, MAX_LOG_LINES, 1000, "lines")
    result = view.api("events.get_task_log", {"task": view.path["task"], "batch_size": lines})
    events = [{"timestamp": e.get("timestamp"), "msg": e.get("msg", "")} for e in result["events"]]
    return JSONResponse({"events": events, "total": result.get("total", len(events))})


def routes(ui: WebUI) -> list[Route]:
    tab_paths = []
    for word in ("tasks", "experiments"):
        tab_paths += [f"/projects/{{project}}/{word}/{{task}}", f"/projects/{{project}}/{word}/{{task}}/{{tab:path}}"]
    return [
        Route("/", ui.page(home)),
        Route("/projects", ui.page(projects_page)),
        Route("/projects/{project}", ui.page(project_page)),
        Route("/projects/{project}/tasks", ui.page(tasks_page)),
        Route("/projects/{project}/experiments", ui.page(tasks_page)),
        *(Route(path, ui.page(task_page)) for path in tab_paths),
        Route("/tasks/{task}/actions/{action}", ui.page(task_action), methods=["POST"]),
        Route("/compare", ui.page(compare_page)),
        Route("/_ui/tasks/status", ui.page(status_json)),
        Route("/_ui/tasks/{task}/scalars", ui.page(scalars_json)),
        Route("/_ui/tasks/{task}/scalars.csv", ui.page(scalars_csv)),
        Route("/_ui/tasks/{task}/log", ui.page(log_json)),
    ]

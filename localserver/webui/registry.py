"""Models, datasets (versions and lineage), pipelines (runs and their DAG), orchestration, and the loop page."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from starlette.responses import FileResponse
from starlette.routing import Route

from ..errors import ApiError
from .core import Invalid, NotFound, View, WebUI, bounded_int, choice, file_link, files_path, text_field
from .graph import layout
from .tasks import get_project, get_task

MODEL_FIELDS = ["id", "name", "tags", "system_tags", "ready", "framework", "project", "task", "created", "last_update"]
MAX_STATE_BYTES = 64 * 1024 * 1024
MAX_FILES_LISTED = 500
# The loop page's defaults: the project, dataset and pipeline names of this repository's loop (tasks/common.py,
# pipelines/retrain.py); the query string can name others.
LOOP_DEFAULTS = {"project": "selfimproving-classifier", "dataset": "pets", "pipeline": "retrain", "tag": "production"}


# files
def file_proxy(view: View):
    """The fileserver's objects for a signed-in browser (``/files`` itself wants the API's Bearer token)."""
    try:
        target = view.ui.server.files.resolve(view.path["path"])
    except ApiError as exc:
        raise Invalid(exc.msg) from None
    if not target.is_file():
        raise NotFound(f"No file {view.path['path']!r}.")
    return FileResponse(target)


def read_json_object(view: View, uri: str | None):
    path = files_path(uri)
    if not path:
        return None
    try:
        target = view.ui.server.files.resolve(path)
        if not target.is_file() or target.stat().st_size > MAX_STATE_BYTES:
            return None
        return json.loads(target.read_text())
    except (ApiError, OSError, ValueError):
        return None


# models
def models_page(view: View):
    query = view.query
    page = bounded_int(query.get("page"), 0, 100_000, 0, "page")
    name = text_field(dict(query), "name", "Name", required=False, max_chars=200)
    tag = text_field(dict(query), "tag", "Tag", required=False, max_chars=200)
    published = choice(query.get("published"), ("yes", "no"), "", "published filter")
    body: dict = {
        "only_fields": MODEL_FIELDS,
        "order_by": ["-created"],
        "page": page,
        "page_size": 50,
        "system_tags": ["-archived"],
    }
    if name:
        body["name"] = re.escape(name)
    if tag:
        body["tags"] = [tag]
    if published:
        body["ready"] = published == "yes"
    models = view.api("models.get_all", body)["models"]
    names = project_names_for(view, [m.get("project") for m in models])
    tasks = task_names(view, [m.get("task") for m in models])
    return view.render(
        "models.html",
        models=models,
        projects=names,
        tasks=tasks,
        filters={"name": name, "tag": tag, "published": published},
        page=page,
        has_next=len(models) == 50,
    )


def project_names_for(view: View, ids) -> dict[str, str]:
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    found = view.api("projects.get_all", {"id": ids, "only_fields": ["id", "name"]})["projects"]
    return {p["id"]: p["name"] for p in found}


def task_names(view: View, ids) -> dict[str, dict]:
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    fields = ["id", "name", "project", "status", "completed", "last_update", "type", "created"]
    found = view.api("tasks.get_all", {"id": ids, "only_fields": fields})["tasks"]
    return {t["id"]: t for t in found}


def get_model(view: View, model_id: str) -> dict:
    found = view.api("models.get_all", {"id": [model_id]})["models"]
    if not found:
        raise NotFound(f"No model with id {model_id!r}.")
    return found[0]


def model_page(view: View):
    model = get_model(view, view.path["model"])
    task = task_names(view, [model.get("task")]).get(model.get("task") or "")
    project = project_names_for(view, [model.get("project")]).get(model.get("project") or "", "")
    metadata = model.get("metadata") or {}
    return view.render(
        "model.html",
        model=model,
        task=task,
        project_name=project,
        metadata=[metadata[k] if isinstance(metadata[k], dict) else {"key": k, "value": metadata[k]} for k in metadata],
        labels=sorted((model.get("labels") or {}).items(), key=lambda item: item[1]),
        download=file_link(model.get("uri")),
    )


def model_action(view: View):
    model = get_model(view, view.path["model"])
    action = choice(view.path["action"], ("publish", "tags"), None, "action")
    if action == "publish":
        view.api("models.set_ready", {"model": model["id"]})
    else:
        tags = list(model.get("tags") or [])
        add = text_field(view.form, "add", "Tag", required=False, max_chars=100)
        remove = text_field(view.form, "remove", "Tag", required=False, max_chars=100)
        if not add and not remove:
            raise Invalid("Give a tag to add or to remove.")
        if add and add not in tags:
            tags.append(add)
        if remove:
            if remove not in tags:
                raise Invalid(f"The model has no tag {remove!r}.")
            tags.remove(remove)
        view.api("models.edit", {"model": model["id"], "tags": tags})
    return view.redirect(f"/models/{model['id']}")


# datasets
def hidden_projects(view: View, marker: str) -> list[dict]:
    """Projects ``<parent>/.datasets/<name>`` (or ``.pipelines``), with ``parent`` and ``short`` names."""
    found = view.api("projects.get_all", {"search_hidden": True, "order_by": ["name"]})["projects"]
    result = []
    for project in found:
        parent, sep, short = project["name"].rpartition(f"/{marker}/")
        if sep and short and "/" not in short:
            result.append({**project, "parent_name": parent, "short": short})
    return result


def version_tasks(view: View, project_ids: list[str], fields=None, types: list[str] | None = None) -> list[dict]:
    if not project_ids:
        return []
    body = {"project": project_ids, "search_hidden": True, "order_by": ["created"]}
    if types:
        body["type"] = types
    body["only_fields"] = fields or ["id", "name", "status", "project", "created", "runtime", "tags", "last_update"]
    return view.api("tasks.get_all", body)["tasks"]


def with_latest_task(view: View, kind: str, fields: list[str], types: list[str] | None = None) -> list[dict]:
    """The hidden ``kind`` projects (``.datasets``, ``.pipelines``), each with its count of tasks of ``types``
    (versions; runs, not their steps, which share the project) and its ``latest`` one."""
    projects = hidden_projects(view, kind)
    found = version_tasks(view, [p["id"] for p in projects], ["id", "project", "created", *fields], types)
    for project in projects:
        mine = [task for task in found if task.get("project") == project["id"]]
        project["count"] = len(mine)
        project["latest"] = mine[-1] if mine else None
    return projects


def datasets_page(view: View):
    return view.render("datasets.html", datasets=with_latest_task(view, ".datasets", ["runtime"]))


def dataset_struct_parents(task: dict) -> list[str]:
    """Parent version ids from the task's ``Dataset Struct`` configuration (as the SDK writes it)."""
    item = (task.get("configuration") or {}).get("Dataset Struct") or {}
    try:
        struct = json.loads(item.get("value") or "{}")
    except ValueError:
        return []
    if not isinstance(struct, dict):
        return []
    for node in struct.values():
        if isinstance(node, dict) and node.get("job_id") == task["id"]:
            parents = [struct.get(p) for p in node.get("parents") or []]
            return [p["job_id"] for p in parents if isinstance(p, dict) and p.get("job_id")]
    return []


def dataset_versions(view: View, project_id: str) -> list[dict]:
    fields = ["id", "name", "status", "project", "created", "runtime", "tags", "configuration", "last_update"]
    versions = version_tasks(view, [project_id], fields)
    for version in versions:
        version["parents"] = dataset_struct_parents(version)
        version.pop("configuration", None)
    return versions


def lineage_graph(versions: list[dict], base: str, current: str | None = None) -> dict:
    nodes = {
        v["id"]: {
            "label": f"v{(v.get('runtime') or {}).get('version') or '?'}",
            "sub": v["id"][:8],
            "status": v.get("status"),
            "href": f"{base}/experiments/{v['id']}",
            "current": v["id"] == current,
        }
        for v in versions
    }
    edges = [(p, v["id"]) for v in versions for p in v["parents"] if p in nodes]
    return layout(nodes, edges)


def dataset_project(view: View) -> tuple[dict, dict]:
    project = get_project(view, view.path["project"])
    if project is None:
        raise NotFound("Name a dataset project.")
    parent, _, short = project["name"].rpartition("/.datasets/")
    return project, {"parent_name": parent, "short": short or project["name"]}


def dataset_page(view: View):
    project, names = dataset_project(view)
    versions = dataset_versions(view, project["id"])
    base = f"/datasets/simple/{project['id']}"
    return view.render(
        "dataset.html",
        project=project,
        names=names,
        versions=versions,
        graph=lineage_graph(versions, base),
        base=base,
    )


def state_entries(view: View, task: dict) -> dict[str, dict] | None:
    """``relative_path -> entry`` from the version's ``state`` artifact; ``None`` when unreadable."""
    for artifact in (task.get("execution") or {}).get("artifacts") or []:
        if artifact.get("key") == "state":
            state = read_json_object(view, artifact.get("uri"))
            if isinstance(state, dict):
                entries = state.get("dataset_file_entries") or []
                return {e["relative_path"]: e for e in entries if isinstance(e, dict) and "relative_path" in e}
    return None


def version_changes(view: View, task: dict, parents: list[str]) -> dict:
    """Files this version added, modified and removed against its parents, from the state artifacts."""
    mine = state_entries(view, task)
    if mine is None:
        return {"available": False}
    inherited: dict[str, dict] = {}
    for parent_id in parents:
        try:
            parent = view.api("tasks.get_by_id", {"task": parent_id, "only_fields": ["id", "execution"]})["task"]
        except ApiError:
            continue
        inherited.update(state_entries(view, parent) or {})
    added, modified = [], []
    for path, entry in sorted(mine.items()):
        if entry.get("parent_dataset_id") not in (None, task["id"]):
            continue
        (modified if path in inherited else added).append(entry)
    removed = [inherited[p] for p in sorted(inherited) if p not in mine]
    return {
        "available": True,
        "added": added[:MAX_FILES_LISTED],
        "modified": modified[:MAX_FILES_LISTED],
        "removed": removed[:MAX_FILES_LISTED],
        "counts": {"added": len(added), "modified": len(modified), "removed": len(removed), "total": len(mine)},
        "sizes": {k: sum(e.get("size") or 0 for e in v) for k, v in (("added", added), ("modified", modified))},
        "limit": MAX_FILES_LISTED,
    }


def dataset_version_page(view: View):
    task = get_task(view, view.path["task"])
    project_id = view.path["project"] if view.path["project"] != "*" else task.get("project")
    project = get_project(view, project_id or "*")
    if project is None:
        raise NotFound("The dataset version has no project.")
    parent, _, short = project["name"].rpartition("/.datasets/")
    versions = dataset_versions(view, project["id"])
    parents = dataset_struct_parents(task)
    base = f"/datasets/simple/{project['id']}"
    return view.render(
        "dataset_version.html",
        task=task,
        project=project,
        names={"parent_name": parent, "short": short or project["name"]},
        runtime=task.get("runtime") or {},
        parents=parents,
        graph=lineage_graph(versions, base, current=task["id"]),
        changes=version_changes(view, task, parents),
        base=base,
    )


# pipelines
def pipelines_page(view: View):
    pipelines = with_latest_task(view, ".pipelines", ["status"], types=["controller"])
    return view.render("pipelines.html", pipelines=pipelines)


def pipeline_runs(view: View, project_id: str) -> list[dict]:
    fields = ["id", "name", "status", "created", "started", "completed", "tags", "hyperparams", "runtime", "type"]
    body = {"project": [project_id], "search_hidden": True, "order_by": ["-created"], "only_fields": fields}
    body["type"] = ["controller"]
    return view.api("tasks.get_all", body)["tasks"]


def pipeline_page(view: View):
    project = get_project(view, view.path["project"])
    if project is None:
        raise NotFound("Name a pipeline project.")
    runs = pipeline_runs(view, project["id"])
    for run in runs:
        run["args"] = {n: p.get("value") for n, p in ((run.get("hyperparams") or {}).get("Args") or {}).items()}
    parent, _, short = project["name"].rpartition("/.pipelines/")
    return view.render("pipeline.html", project=project, runs=runs, names={"parent_name": parent, "short": short})


def pipeline_dag(task: dict) -> dict[str, dict]:
    """The controller's ``Pipeline`` configuration: step name -> node (parents, job_id, executed, queue...)."""
    item = (task.get("configuration") or {}).get("Pipeline") or {}
    try:
        dag = json.loads(item.get("value") or "{}")
    except ValueError:
        return {}
    return {name: node for name, node in dag.items() if isinstance(node, dict)} if isinstance(dag, dict) else {}


def pipeline_run_page(view: View):
    task = get_task(view, view.path["task"])
    dag = pipeline_dag(task)
    step_ids = [node.get("executed") or node.get("job_id") for node in dag.values()]
    steps = task_names(view, step_ids)
    nodes, rows = {}, []
    for name, node in dag.items():
        step = steps.get(node.get("executed") or node.get("job_id") or "")
        href = f"/projects/{step.get('project') or '*'}/tasks/{step['id']}/execution" if step else None
        status = step["status"] if step else ("skipped" if node.get("skip_job") else "pending")
        nodes[name] = {"label": name, "sub": step["id"][:8] if step else "not started", "status": status, "href": href}
        rows.append({"name": name, "node": node, "step": step, "status": status, "href": href})
    edges = [(p, name) for name, node in dag.items() for p in node.get("parents") or [] if p in dag]
    return view.render(
        "pipeline_run.html",
        task=task,
        graph=layout(nodes, edges),
        steps=rows,
        args={n: p.get("value") for n, p in ((task.get("hyperparams") or {}).get("Args") or {}).items()},
        project_id=view.path["project"],
    )


# orchestration
def orchestration_page(view: View):
    queues = view.api("queues.get_all", {"order_by": ["name"]})["queues"]
    workers = view.api("workers.get_all", {})["workers"]
    ids = [e["task"] for q in queues for e in q.get("entries") or []]
    ids += [(w.get("task") or {}).get("id") for w in workers]
    tasks = task_names(view, ids)
    return view.render("orchestration.html", queues=queues, workers=workers, tasks=tasks, moves=QUEUE_MOVES)


def queue_remove(view: View):
    """Take a pending task off its queue: ``tasks.dequeue``, as the SDK's ``Task.dequeue`` does."""
    task_id = text_field(view.form, "task", "Task")
    queue = view.api("queues.get_by_id", {"queue": view.path["queue"]})["queue"]
    if task_id not in {e["task"] for e in queue.get("entries") or []}:
        raise Invalid(f"Task {task_id} is not waiting in queue {queue['name']}.")
    view.api("tasks.dequeue", {"task": task_id})
    return view.redirect("/workers-and-queues")


@dataclass(frozen=True)
class QueueMove:
    endpoint: str
    label: str
    title: str
    toward_front: bool  # impossible for the first pending task (else for the last)


QUEUE_MOVES = {
    "front": QueueMove("queues.move_task_to_front", "⤒", "To the front", True),
    "forward": QueueMove("queues.move_task_forward", "↑", "One up", True),
    "backward": QueueMove("queues.move_task_backward", "↓", "One down", False),
    "back": QueueMove("queues.move_task_to_back", "⤓", "To the back", False),
}


def queue_move(view: View):
    """Reorder a pending task within its queue (the ``queues.move_task_*`` calls)."""
    task_id = text_field(view.form, "task", "Task")
    move = choice(text_field(view.form, "to", "Move"), QUEUE_MOVES, None, "move")
    queue = view.api("queues.get_by_id", {"queue": view.path["queue"]})["queue"]
    view.api(QUEUE_MOVES[move].endpoint, {"queue": queue["id"], "task": task_id})
    return view.redirect(f"/workers-and-queues#queue-{queue['name']}")


# the loop
def loop_names(view: View) -> dict:
    names = {}
    for key, default in LOOP_DEFAULTS.items():
        value = (view.query.get(key) or default).strip()
        if not value or len(value) > 200:
            raise Invalid(f"The {key} name must be 1 to 200 characters.")
        names[key] = value
    return names


def project_by_name(view: View, name: str) -> dict | None:
    found = view.api("projects.get_all", {"name": f"^{re.escape(name)}$", "search_hidden": True})["projects"]
    return found[0] if found else None


def metadata_value(model: dict, key: str):
    entry = (model.get("metadata") or {}).get(key)
    value = entry.get("value") if isinstance(entry, dict) else entry
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def promotion_seq(model: dict) -> int:
    """The loop's rule for "the production model" (``loop.registry``, which this package cannot import): the
    published, tagged model with the highest promotion number wins, so the moment a promotion moves the tag (two
    edits) shows one model, not two."""
    try:
        return int(metadata_value(model, "promotion_seq") or 0)
    except (TypeError, ValueError):
        return 0


def loop_page(view: View):
    names = loop_names(view)
    dataset_project = project_by_name(view, f"{names['project']}/.datasets/{names['dataset']}")
    pipeline_project = project_by_name(view, f"{names['project']}/.pipelines/{names['pipeline']}")
    versions = dataset_versions(view, dataset_project["id"]) if dataset_project else []
    runs = pipeline_runs(view, pipeline_project["id"]) if pipeline_project else []
    runs_by_dataset: dict[str, list[dict]] = {}
    for run in runs:
        dataset_id = (((run.get("hyperparams") or {}).get("Args") or {}).get("dataset_id") or {}).get("value")
        runs_by_dataset.setdefault(dataset_id or "", []).append(run)
    tagged = view.api(
        "models.get_all", {"tags": [names["tag"]], "ready": True, "order_by": ["-created"], "only_fields": []}
    )["models"]
    current = max(tagged, key=promotion_seq, default=None)
    rows = []
    for version in reversed(versions):
        for run in runs_by_dataset.get(version["id"]) or [None]:
            rows.append({"version": version, "run": run, **run_outcome(view, run)})
    since = None
    if current:
        promoting = [r for r in rows if r.get("model") and r["model"]["id"] == current["id"] and r.get("decided")]
        since = promoting[0]["decided"] if promoting else current.get("last_update")
    return view.render(
        "loop.html",
        names=names,
        rows=rows,
        current=current,
        since=since,
        dataset_project=dataset_project,
        pipeline_project=pipeline_project,
        orphan_runs=[r for d, rs in runs_by_dataset.items() if d not in {v["id"] for v in versions} for r in rs],
    )


def run_outcome(view: View, run: dict | None) -> dict:
    """The model a pipeline run produced and its promotion decision (from the steps named in its DAG)."""
    if run is None:
        return {}
    full = get_task(view, run["id"], only_fields=["id", "configuration"])
    dag = pipeline_dag(full)
    step_ids = {name: node.get("executed") or node.get("job_id") for name, node in dag.items()}
    steps = task_names(view, step_ids.values())
    train = steps.get(step_ids.get("train") or "")
    gate = steps.get(step_ids.get("register_model") or "")
    model = None
    if train:
        found = view.api("models.get_all", {"task": [train["id"]], "order_by": ["-created"]})["models"]
        model = found[0] if found else None
    promotion = metadata_value(model, "promotion") if model else None
    return {
        "model": model,
        "promotion": promotion,
        "metrics": metadata_value(model, "metrics") if model else None,
        "compared_with": metadata_value(model, "compared_with") if model else None,
        "gate": gate,
        "decided": gate.get("completed") if gate and gate.get("status") in ("completed", "published") else None,
    }


def routes(ui: WebUI) -> list[Route]:
    return [
        Route("/models", ui.page(models_page)),
        Route("/models/{model}", ui.page(model_page)),
        Route("/models/{model}/{tab:path}", ui.page(model_page)),
        Route("/projects/{project}/models/{model}", ui.page(model_page)),
        Route("/projects/{project}/models/{model}/{tab:path}", ui.page(model_page)),
        Route("/models/{model}/actions/{action}", ui.page(model_action), methods=["POST"]),
        Route("/datasets", ui.page(datasets_page)),
        Route("/datasets/simple/{project}", ui.page(dataset_page)),
        Route("/datasets/simple/{project}/experiments/{task}", ui.page(dataset_version_page)),
        Route("/datasets/simple/{project}/experiments/{task}/{tab:path}", ui.page(dataset_version_page)),
        Route("/pipelines", ui.page(pipelines_page)),
        Route("/pipelines/{project}", ui.page(pipeline_page)),
        Route("/pipelines/{project}/experiments", ui.page(pipeline_page)),
        Route("/pipelines/{project}/experiments/{task}", ui.page(pipeline_run_page)),
        Route("/pipelines/{project}/experiments/{task}/{tab:path}", ui.page(pipeline_run_page)),
        Route("/workers-and-queues", ui.page(orchestration_page)),
        Route("/workers-and-queues/{tab:path}", ui.page(orchestration_page)),
        Route("/queues/{queue}/remove", ui.page(queue_remove), methods=["POST"]),
        Route("/queues/{queue}/move", ui.page(queue_move), methods=["POST"]),
        Route("/loop", ui.page(loop_page)),
        Route("/_ui/files/{path:path}", ui.page(file_proxy)),
    ]

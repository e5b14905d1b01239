"""Datasets: the list, a dataset's versions and lineage graph, a version's page with what it changed."""

from __future__ import annotations

import json

from starlette.routing import Route

from ..errors import ApiError
from .core import NotFound, View, WebUI
from .files import read_json_object
from .graph import layout
from .lookups import by_project, get_project, get_task, hidden_projects, owner_name, user_names, version_tasks

MAX_FILES_LISTED = 500


def datasets_page(view: View):
    datasets = hidden_projects(view, ".datasets")
    versions = by_project(version_tasks(view, [d["id"] for d in datasets], ["id", "project", "created", "runtime"]))
    for dataset in datasets:
        mine = versions.get(dataset["id"], [])
        dataset["count"] = len(mine)
        dataset["latest"] = mine[-1] if mine else None
    return view.render("datasets.html", datasets=datasets)


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
    fields = ["id", "name", "status", "project", "created", "runtime", "tags", "configuration", "last_update", "user"]
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
        owners=user_names(view),
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
        owner=owner_name(view, task),
        parents=parents,
        graph=lineage_graph(versions, base, current=task["id"]),
        changes=version_changes(view, task, parents),
        base=base,
    )


def routes(ui: WebUI) -> list[Route]:
    return [
        Route("/datasets", ui.page(datasets_page)),
        Route("/datasets/simple/{project}", ui.page(dataset_page)),
        Route("/datasets/simple/{project}/experiments/{task}", ui.page(dataset_version_page)),
        Route("/datasets/simple/{project}/experiments/{task}/{tab:path}", ui.page(dataset_version_page)),
    ]

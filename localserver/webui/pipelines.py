"""Pipelines: the list, a pipeline's runs, a run's DAG of steps.

A pipeline is a hidden project ``<parent>/.pipelines/<name>`` holding its controller tasks. A controller still in
``created`` has never been enqueued or started: a draft (the template that runs are cloned from, say), listed apart
from the runs and not counted as one.
"""

from __future__ import annotations

import json

from starlette.routing import Route

from .core import NotFound, View, WebUI
from .graph import layout
from .lookups import by_project, get_project, get_task, hidden_projects, task_names, version_tasks

DRAFT_STATUS = "created"


def is_draft(controller: dict) -> bool:
    return controller.get("status") == DRAFT_STATUS


def pipelines_page(view: View):
    pipelines = hidden_projects(view, ".pipelines")
    fields = ["id", "project", "created", "status"]
    controllers = by_project(version_tasks(view, [p["id"] for p in pipelines], fields, types=["controller"]))
    for pipeline in pipelines:
        mine = controllers.get(pipeline["id"], [])
        runs = [c for c in mine if not is_draft(c)]
        pipeline["count"], pipeline["drafts"] = len(runs), len(mine) - len(runs)
        pipeline["latest"] = runs[-1] if runs else None
    return view.render("pipelines.html", pipelines=pipelines)


def pipeline_runs(view: View, project_id: str, fields=None, runs_only: bool = False, newest: int = 0) -> list[dict]:
    """The pipeline's controllers, newest first: its runs and drafts (``is_draft``), or only its runs; the
    ``newest`` ones when given."""
    fields = fields or [
        "id",
        "name",
        "status",
        "created",
        "started",
        "completed",
        "tags",
        "hyperparams",
        "runtime",
        "type",
    ]
    body = {"project": [project_id], "search_hidden": True, "order_by": ["-created"], "only_fields": fields}
    body["type"] = ["controller"]
    if runs_only:
        body["status"] = ["-" + DRAFT_STATUS]
    if newest:
        body["page_size"] = newest
    return view.api("tasks.get_all", body)["tasks"]


def run_args(run: dict) -> dict[str, str]:
    """The controller's pipeline parameters (its ``Args`` section), name -> value."""
    return {n: p.get("value") for n, p in ((run.get("hyperparams") or {}).get("Args") or {}).items()}


def pipeline_page(view: View):
    project = get_project(view, view.path["project"])
    if project is None:
        raise NotFound("Name a pipeline project.")
    controllers = pipeline_runs(view, project["id"])
    for controller in controllers:
        controller["args"] = run_args(controller)
    parent, _, short = project["name"].rpartition("/.pipelines/")
    return view.render(
        "pipeline.html",
        project=project,
        runs=[c for c in controllers if not is_draft(c)],
        drafts=[c for c in controllers if is_draft(c)],
        names={"parent_name": parent, "short": short},
    )


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
        args=run_args(task),
        project_id=view.path["project"],
    )


def routes(ui: WebUI) -> list[Route]:
    return [
        Route("/pipelines", ui.page(pipelines_page)),
        Route("/pipelines/{project}", ui.page(pipeline_page)),
        Route("/pipelines/{project}/experiments", ui.page(pipeline_page)),
        Route("/pipelines/{project}/experiments/{task}", ui.page(pipeline_run_page)),
        Route("/pipelines/{project}/experiments/{task}/{tab:path}", ui.page(pipeline_run_page)),
    ]

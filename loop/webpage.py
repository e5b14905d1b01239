"""The loop's page in the server's web UI (`/loop`): each dataset version, the pipeline run it triggered, the model
that run trained, the promotion gate's verdict, and the model in production by `loop.registry`'s rule.

Mounted as a `localserver.webui.WebExtension` (the server names nothing of the loop):

    python -m localserver serve --data-dir DIR --web-extension loop.webpage:extension

The defaults are the loop's names (`loop.settings`, so the `CLASSIFIER_*` overrides hold); the query string can
name others (`?project=&dataset_project=&dataset=&pipeline=&tag=`). The page makes a fixed number of API calls,
whatever the number of rows, and shows the newest `MAX_VERSIONS` dataset versions and `MAX_RUNS` pipeline runs.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route

from localserver.webui import WebExtension
from localserver.webui.core import Invalid, View, WebUI
from localserver.webui.datasets import dataset_versions
from localserver.webui.lookups import project_by_name, task_names
from localserver.webui.pipelines import pipeline_dag, pipeline_runs, run_args
from loop import settings
from loop.registry import RegistryModel, pick_production

MAX_VERSIONS = 100
MAX_RUNS = 2 * MAX_VERSIONS  # a version's retries and manual runs; older runs are left out, and the page says so
MAX_NAME_CHARS = 200
TRAIN_STEP, GATE_STEP = "train", "register_model"  # the step names of pipelines/retrain.py
MODEL_FIELDS = ["id", "name", "tags", "ready", "created", "last_update", "labels", "metadata", "task", "project"]


def loop_names(view: View) -> dict[str, str]:
    defaults = {
        "project": settings.PROJECT,
        "dataset_project": settings.DATASET_PROJECT,
        "dataset": settings.DATASET_NAME,
        "pipeline": settings.PIPELINE_NAME,
        "tag": settings.PRODUCTION_TAG,
    }
    if view.query.get("project") and not view.query.get("dataset_project"):
        defaults["dataset_project"] = view.query["project"]  # the loop's default: the dataset in the project
    names = {}
    for key, default in defaults.items():
        value = (view.query.get(key) or default).strip()
        if not value or len(value) > MAX_NAME_CHARS:
            raise Invalid(f"The {key} name must be 1 to {MAX_NAME_CHARS} characters.")
        names[key] = value
    return names


def loop_page(view: View):
    names = loop_names(view)
    project = project_by_name(view, names["project"])
    dataset_project = project_by_name(view, f"{names['dataset_project']}/.datasets/{names['dataset']}")
    pipeline_project = project_by_name(view, f"{names['project']}/.pipelines/{names['pipeline']}")
    versions = dataset_versions(view, dataset_project["id"]) if dataset_project else []
    shown_versions = list(reversed(versions))[:MAX_VERSIONS]
    fields = ["id", "name", "status", "created", "tags", "hyperparams", "configuration"]
    runs = (
        pipeline_runs(view, pipeline_project["id"], fields, runs_only=True, newest=MAX_RUNS) if pipeline_project else []
    )
    outcomes = run_outcomes(view, runs)
    runs_by_dataset: dict[str, list[dict]] = {}
    for run in runs:
        runs_by_dataset.setdefault(run_args(run).get("dataset_id") or "", []).append(run)

    current = production(view, project, names["tag"])
    rows = [
        {"version": version, "run": run, **outcomes.get(run["id"] if run else "", {})}
        for version in shown_versions
        for run in runs_by_dataset.get(version["id"]) or [None]
    ]
    since = None
    if current:
        promoting = [r for r in rows if r.get("model") and r["model"]["id"] == current["id"] and r.get("decided")]
        since = promoting[0]["decided"] if promoting else current.get("last_update")
    listed = {version["id"] for version in versions}
    return view.render(
        "loop.html",
        names=names,
        rows=rows,
        current=current,
        since=since,
        dataset_project=dataset_project,
        pipeline_project=pipeline_project,
        hidden_versions=len(versions) - len(shown_versions),
        runs_cut=MAX_RUNS if len(runs) == MAX_RUNS else 0,
        orphan_runs=[run for dataset, mine in runs_by_dataset.items() if dataset not in listed for run in mine],
    )


def production(view: View, project: dict | None, tag: str) -> dict | None:
    """The production model of `project` as `loop.registry.production_model` picks it, as the API returns it."""
    if project is None:
        return None
    body = {"project": [project["id"]], "tags": [tag], "ready": True, "system_tags": ["-archived"]}
    tagged = view.api("models.get_all", {**body, "only_fields": MODEL_FIELDS})["models"]
    chosen = pick_production(RegistryModel.from_fields(model) for model in tagged)
    return next(model for model in tagged if model["id"] == chosen.id) if chosen else None


def run_outcomes(view: View, runs: list[dict]) -> dict[str, dict]:
    """Per run id: the model its train step produced and the gate's decision, in two API calls for all runs."""
    step_ids = {}
    for run in runs:
        dag = pipeline_dag(run)
        step_ids[run["id"]] = {name: node.get("executed") or node.get("job_id") for name, node in dag.items()}
    steps = task_names(view, [i for ids in step_ids.values() for i in ids.values()])
    train_ids = [ids.get(TRAIN_STEP) for ids in step_ids.values() if ids.get(TRAIN_STEP) in steps]
    models_by_task: dict[str, dict] = {}
    if train_ids:
        body = {"task": train_ids, "order_by": ["-created"], "only_fields": MODEL_FIELDS}
        for model in view.api("models.get_all", body)["models"]:
            models_by_task.setdefault(model.get("task"), model)  # the newest of each task
    outcomes = {}
    for run_id, ids in step_ids.items():
        train, gate = steps.get(ids.get(TRAIN_STEP) or ""), steps.get(ids.get(GATE_STEP) or "")
        model = models_by_task.get(train["id"]) if train else None
        metadata = RegistryModel.from_fields(model).metadata if model else {}
        outcomes[run_id] = {
            "model": model,
            "promotion": metadata.get("promotion"),
            "metrics": metadata.get("metrics"),
            "compared_with": metadata.get("compared_with"),
            "gate": gate,
            "decided": gate.get("completed") if gate and gate.get("status") in ("completed", "published") else None,
        }
    return outcomes


def routes(ui: WebUI) -> list[Route]:
    return [Route("/loop", ui.page(loop_page))]


extension = WebExtension(routes=routes, templates=Path(__file__).parent / "templates", nav=(("/loop", "The loop"),))
SPEC = f"{__name__}:extension"  # what `python -m localserver serve --web-extension` takes

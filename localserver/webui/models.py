"""The model registry's pages: the models table, a model's page, publishing and tagging it."""

from __future__ import annotations

import re

from starlette.routing import Route

from .core import Invalid, NotFound, View, WebUI, bounded_int, choice, file_link, text_field
from .lookups import owner_name, project_names_for, task_names, user_names

MODEL_FIELDS = [
    *("id", "name", "tags", "system_tags", "ready", "framework", "project", "task", "created", "last_update"),
    "user",
]
PAGE_SIZE = 50


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
        "page_size": PAGE_SIZE,
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
        owners=user_names(view),
        filters={"name": name, "tag": tag, "published": published},
        page=page,
        has_next=len(models) == PAGE_SIZE,
    )


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
        owner=owner_name(view, model),
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


def routes(ui: WebUI) -> list[Route]:
    return [
        Route("/models", ui.page(models_page)),
        Route("/models/{model}", ui.page(model_page)),
        Route("/models/{model}/{tab:path}", ui.page(model_page)),
        Route("/projects/{project}/models/{model}", ui.page(model_page)),
        Route("/projects/{project}/models/{model}/{tab:path}", ui.page(model_page)),
        Route("/models/{model}/actions/{action}", ui.page(model_action), methods=["POST"]),
    ]

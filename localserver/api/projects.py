"""projects.*: a path hierarchy (``a/b/c``) whose missing parents are created automatically."""

from __future__ import annotations

from ..errors import invalid_project, not_unique
from ..query import QuerySpec, select
from . import Context, endpoint, new_id, now, require

SPEC = QuerySpec(
    list_fields=frozenset({"id", "parent", "path", "user"}),
    pattern_fields=frozenset({"name", "basename", "description"}),
    datetime_fields=frozenset({"created", "last_update"}),
    document_fields=frozenset(
        {
            *("id", "name", "basename", "parent", "path", "description", "tags", "system_tags", "created"),
            *("default_output_destination", "last_update", "user", "company"),
        }
    ),
    entity="project",
    search_fields=("id", "name", "description"),
)
_EDITABLE = ("description", "tags", "system_tags", "default_output_destination")


def get_project(ctx: Context, project_id: str) -> dict:
    doc = ctx.store.get("projects", project_id) if project_id else None
    if doc is None:
        raise invalid_project(project_id)
    return doc


def find_by_name(ctx: Context, name: str) -> dict | None:
    found = ctx.store.find_by_name("projects", name)
    return found[0] if found else None


def normalize_name(name: str) -> str:
    return "/".join(part.strip() for part in name.strip().strip("/").split("/") if part.strip())


def ensure_project(ctx: Context, name: str, fields: dict | None = None) -> dict:
    """Return the project called ``name``, creating it and any missing parents."""
    name = normalize_name(name)
    existing = find_by_name(ctx, name)
    if existing:
        return existing
    parts = name.split("/")
    parent = ensure_project(ctx, "/".join(parts[:-1])) if len(parts) > 1 else None
    stamp = now()
    doc = {
        "id": new_id(),
        "name": name,
        "basename": parts[-1],
        "parent": parent["id"] if parent else None,
        "path": [*parent["path"], parent["id"]] if parent else [],
        "description": "",
        "tags": [],
        "system_tags": [],
        "default_output_destination": None,
        "created": stamp,
        "last_update": stamp,
        "user": ctx.user,
        "company": "",
    }
    for key in _EDITABLE:
        if fields and fields.get(key) is not None:
            doc[key] = fields[key]
    ctx.store.put("projects", doc)
    return doc


@endpoint("projects.create")
def create(ctx: Context, body: dict) -> dict:
    name = normalize_name(require(body, "name"))
    if find_by_name(ctx, name):
        raise not_unique(f"project name {name!r} already exists")
    return {"id": ensure_project(ctx, name, body)["id"]}


@endpoint("projects.get_by_id", read_only=True)
def get_by_id(ctx: Context, body: dict) -> dict:
    return {"project": get_project(ctx, require(body, "project"))}


@endpoint("projects.get_all", "projects.get_all_ex", read_only=True)
def get_all(ctx: Context, body: dict) -> dict:
    return {"projects": select(ctx.store, "projects", body, SPEC)}


@endpoint("projects.update")
def update(ctx: Context, body: dict) -> dict:
    doc = get_project(ctx, require(body, "project"))
    fields = {key: body[key] for key in _EDITABLE if key in body and body[key] is not None}
    new_name = body.get("name")
    if new_name and normalize_name(new_name) != doc["name"]:
        _rename(ctx, doc, normalize_name(new_name))
        fields["name"] = doc["name"]
    doc.update(fields)
    doc["last_update"] = now()
    ctx.store.put("projects", doc)
    return {"updated": 1, "fields": fields}


def _rename(ctx: Context, doc: dict, new_name: str) -> None:
    if find_by_name(ctx, new_name):
        raise not_unique(f"project name {new_name!r} already exists")
    old_prefix = doc["name"] + "/"
    parts = new_name.split("/")
    parent = ensure_project(ctx, "/".join(parts[:-1])) if len(parts) > 1 else None
    doc.update(
        name=new_name,
        basename=parts[-1],
        parent=parent["id"] if parent else None,
        path=[*parent["path"], parent["id"]] if parent else [],
    )
    for child in ctx.store.scan("projects"):
        if child["name"].startswith(old_prefix):
            child["name"] = new_name + "/" + child["name"][len(old_prefix) :]
            index = child["path"].index(doc["id"])
            child["path"] = [*doc["path"], *child["path"][index:]]
            ctx.store.put("projects", child)


@endpoint("projects.delete")
def delete(ctx: Context, body: dict) -> dict:
    doc = get_project(ctx, require(body, "project"))
    doomed = [p for p in ctx.store.scan("projects") if doc["id"] in p["path"]] + [doc]
    ids = {p["id"] for p in doomed}
    tasks = [t for t in ctx.store.scan("tasks", projects=ids)]
    models = [m for m in ctx.store.scan("models", projects=ids)]
    if (tasks or models) and not body.get("force") and not body.get("delete_contents"):
        raise invalid_project(f"{doc['id']} has tasks or models (use force or delete_contents)")
    for entity, items in (("tasks", tasks), ("models", models)):
        for item in items:
            if body.get("delete_contents"):
                ctx.store.delete(entity, item["id"])
            else:
                item["project"] = None
                ctx.store.put(entity, item)
    for p in doomed:
        ctx.store.delete("projects", p["id"])
    return {"deleted": len(doomed), "disassociated_tasks": 0 if body.get("delete_contents") else len(tasks)}

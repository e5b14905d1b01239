"""The reads several pages share: one task, one project, names by id, the hidden ``.datasets``/``.pipelines``
projects and their tasks. Each is one API call (several ids in one call), never one per row."""

from __future__ import annotations

import re

from ..errors import ApiError
from .core import NotFound, View

TASK_SUMMARY_FIELDS = ["id", "name", "project", "status", "completed", "last_update", "type", "created"]


def get_task(view: View, task_id: str, only_fields=None) -> dict:
    body = {"task": task_id}
    if only_fields:
        body["only_fields"] = only_fields
    try:
        return view.api("tasks.get_by_id", body)["task"]
    except ApiError as exc:
        if exc.subcode == 101:
            raise NotFound(f"No task with id {task_id!r}.") from None
        raise


def get_project(view: View, project_id: str) -> dict | None:
    """``None`` for ``*`` (every project); :class:`NotFound` for an unknown id."""
    if project_id == "*":
        return None
    found = view.api("projects.get_all", {"id": [project_id], "search_hidden": True})["projects"]
    if not found:
        raise NotFound(f"No project with id {project_id!r}.")
    return found[0]


def project_by_name(view: View, name: str) -> dict | None:
    found = view.api("projects.get_all", {"name": f"^{re.escape(name)}$", "search_hidden": True})["projects"]
    return found[0] if found else None


def project_names(view: View) -> dict[str, str]:
    """Every project's name by id, hidden ones included."""
    projects = view.api("projects.get_all", {"search_hidden": True, "only_fields": ["id", "name"]})["projects"]
    return {p["id"]: p["name"] for p in projects}


def project_names_for(view: View, ids) -> dict[str, str]:
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    found = view.api("projects.get_all", {"id": ids, "only_fields": ["id", "name"]})["projects"]
    return {p["id"]: p["name"] for p in found}


def user_names(view: View) -> dict[str, str]:
    """Every user's name by id, removed users included (what they created still names them)."""
    return {user["id"]: user["name"] for user in view.api("users.get_all", {})["users"]}


def owner_name(view: View, entity: dict) -> str:
    """The name of the user who created ``entity`` (its id when no user has it)."""
    user_id = entity.get("user") or ""
    found = view.api("users.get_all", {"id": [user_id]})["users"] if user_id else []
    return found[0]["name"] if found else user_id


def task_names(view: View, ids, fields=TASK_SUMMARY_FIELDS) -> dict[str, dict]:
    """The tasks of ``ids`` (``fields`` of each) by id; unknown ids are left out."""
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    found = view.api("tasks.get_all", {"id": ids, "only_fields": list(fields)})["tasks"]
    return {t["id"]: t for t in found}


def hidden_projects(view: View, marker: str) -> list[dict]:
    """Projects ``<parent>/.datasets/<name>`` (or ``.pipelines``), with ``parent`` and ``short`` names."""
    found = view.api("projects.get_all", {"search_hidden": True, "order_by": ["name"]})["projects"]
    result = []
    for project in found:
        parent, sep, short = project["name"].rpartition(f"/{marker}/")
        if sep and short and "/" not in short:
            result.append({**project, "parent_name": parent, "short": short})
    return result


def by_project(tasks: list[dict]) -> dict[str, list[dict]]:
    """``tasks`` grouped by their project id, each group in the order given."""
    groups: dict[str, list[dict]] = {}
    for task in tasks:
        groups.setdefault(task.get("project") or "", []).append(task)
    return groups


def version_tasks(view: View, project_ids: list[str], fields=None, types: list[str] | None = None) -> list[dict]:
    """The tasks of these (hidden) projects, oldest first."""
    if not project_ids:
        return []
    body = {"project": project_ids, "search_hidden": True, "order_by": ["created"]}
    if types:
        body["type"] = types
    body["only_fields"] = fields or ["id", "name", "status", "project", "created", "runtime", "tags", "last_update"]
    return view.api("tasks.get_all", body)["tasks"]

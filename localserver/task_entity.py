"""The task entity's rules, on plain documents (no store, no request): the status state machine and "a fresh run",
the fields a run starts with, shared by ``tasks.create``, ``tasks.clone`` and ``tasks.reset``.

Every endpoint that changes a task's status goes through :func:`check_transition` (``localserver.api.tasks.
set_status``); the status-dependent refusals of editing, resetting, deleting and dequeuing are here as well.
"""

from __future__ import annotations

import copy

from .errors import invalid_task_status

STATUSES = ("created", "queued", "in_progress", "stopped", "completed", "failed", "published", "closed", "publishing")

# Allowed status changes without ``force`` (the documented ClearML state machine, plus closed and publishing).
TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"queued", "in_progress"}),
    "queued": frozenset({"created", "in_progress", "stopped"}),
    "in_progress": frozenset({"stopped", "failed", "created", "completed"}),
    "completed": frozenset({"published", "in_progress", "created"}),
    "stopped": frozenset(
        {"closed", "created", "failed", "queued", "in_progress", "published", "publishing", "completed"}
    ),
    "failed": frozenset({"created", "stopped", "published", "queued"}),
    "closed": frozenset({"created", "in_progress"}),
    "publishing": frozenset({"published", "failed"}),
    "published": frozenset(),
}
ENDED = frozenset({"completed", "stopped", "failed"})  # a change to one of these stamps ``completed``
# What a clone leaves out of the source's system tags: the SDK marks tasks it runs locally as "development".
NOT_CLONED_SYSTEM_TAGS = frozenset({"development", "archived"})


def status_of(doc: dict) -> str:
    return doc.get("status") or "created"


def check_transition(doc: dict, status: str, force: bool) -> None:
    current = status_of(doc)
    if status != current and status not in TRANSITIONS.get(current, frozenset()) and not force:
        raise invalid_task_status(f"cannot change task {doc['id']} from {current} to {status}")


def status_fields(doc: dict, status: str, stamp: str, reason: str | None, message: str | None) -> dict:
    """The fields a change of ``doc`` to ``status`` at ``stamp`` sets (the transition already checked)."""
    fields: dict = {"status": status, "status_changed": stamp}
    if reason is not None:
        fields["status_reason"] = reason
    if message is not None:
        fields["status_message"] = message
    if status == "in_progress" and not doc.get("started"):
        fields["started"] = stamp
    if status in ENDED:
        fields["completed"] = stamp
    if status == "published":
        fields["published"] = stamp
    if status == "created":
        fields.update(started=None, completed=None)
    return fields


def check_editable(doc: dict, force: bool) -> None:
    if status_of(doc) != "created" and not force:
        raise invalid_task_status(f"task {doc['id']} is {doc['status']}; only created tasks can be edited")


def check_resettable(doc: dict, force: bool) -> None:
    if status_of(doc) == "published" and not force:
        raise invalid_task_status(f"task {doc['id']} is published")


def check_deletable(doc: dict, force: bool) -> None:
    if status_of(doc) == "in_progress" and not force:
        raise invalid_task_status(f"task {doc['id']} is in progress (use force)")


def check_dequeueable(doc: dict, new_status: str, force: bool) -> None:
    """Only a queued task is dequeued, unless forced or handed straight to a run (``new_status`` in_progress)."""
    if status_of(doc) != "queued" and not force and new_status != "in_progress":
        raise invalid_task_status(f"task {doc['id']} is not queued")


def fresh_run(doc: dict, stamp: str) -> dict:
    """The fields of ``doc`` a new run starts with: status created, no timestamps, metrics, worker, runtime,
    queue, output artifacts, output models or output error. What configures the run is kept: execution
    parameters, input artifacts and models, the output destination."""
    execution = doc.get("execution") or {}
    artifacts = execution.get("artifacts") or []
    return {
        "status": "created",
        "status_reason": "",
        "status_message": "",
        "status_changed": stamp,
        "started": None,
        "completed": None,
        "published": None,
        "last_iteration": 0,
        "last_metrics": {},
        "last_worker": None,
        "last_worker_report": None,
        "active_duration": None,
        "runtime": {},
        "execution": {
            "parameters": {},
            **execution,
            "queue": None,
            "artifacts": [a for a in artifacts if a.get("mode") == "input"],
        },
        "models": {"input": (doc.get("models") or {}).get("input") or [], "output": []},
        "output": {"destination": (doc.get("output") or {}).get("destination")},
    }


def new_document(task_id: str, user: str, stamp: str) -> dict:
    """A task as ``tasks.create`` starts it, before the request's fields are applied."""
    doc = {
        "id": task_id,
        "name": "",
        "type": "custom",
        "comment": "",
        "created": stamp,
        "last_update": stamp,
        "last_change": stamp,
        "project": None,
        "parent": None,
        "user": user,
        "company": "",
        "tags": [],
        "system_tags": [],
        "script": {},
        "hyperparams": {},
        "configuration": {},
        "container": {},
    }
    doc.update(fresh_run(doc, stamp))
    return doc


def cloned_document(source: dict, task_id: str, user: str, stamp: str) -> dict:
    """A copy of ``source`` as a new draft: its own id, creator and fresh run, parent the source; the caller
    applies the request's overrides (name, project, tags, parameters...)."""
    doc = copy.deepcopy(source)
    doc.update(fresh_run(doc, stamp))
    doc.update(
        id=task_id,
        name=f"{source['name']} (Clone)",
        parent=source["id"],
        created=stamp,
        user=user,
        system_tags=[t for t in source.get("system_tags") or [] if t not in NOT_CLONED_SYSTEM_TAGS],
    )
    return doc

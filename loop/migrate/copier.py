"""Copy a ClearML server's history onto another, in an order that keeps every reference resolvable:

1. projects and queues, matched by name (an existing one on the target is reused);
2. a shell for every task, oldest first (the target stamps creation times, and the loop orders versions and
   models by them), in the hidden project `.migration-incomplete`, so that every task id has its copy's id
   before anything that names one is written (a pipeline controller names steps created after it);
3. the models, oldest first: each created with its re-uploaded weights in the hidden project, then, once every
   model has its copy (a rolled-back model's metadata names the newer one), placed with its metadata, project,
   tags and published state;
4. each task's content: fields, events (streamed a page at a time), artifacts (files re-uploaded), and only
   then its project, system tags and status, as the server refuses events for a published task.

A task counts as copied only once the last step has been recorded in the id map; an interrupted copy is done
again from its start (its events deleted first) and until then sits in the hidden project, invisible to the
SDK's queries; the project goes, with anything a killed run created but did not record, once all is copied.
Running tasks arrive stopped, queued ones as drafts; the trigger scheduler's state artifact is left behind (its
`last_update` would make every migrated dataset version start a retrain), and the promotion lock projects too.
Owners and creation times are the target's own: the public API sets them from the credentials and the clock of
the copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from tqdm import tqdm

from loop import registry

from .idmap import DONE, SHELL, IdMap
from .server import Server, ServerError
from .translate import MAX_REWRITTEN_BYTES, Translation, is_text, prefixes

log = logging.getLogger(__name__)

STAGING_PROJECT = ".migration-incomplete"
HIDDEN = "hidden"
EVENT_BATCH = 500
# What each event type carries (the SDK's event schemas); whatever else a server adds stays behind.
EVENT_FIELDS = {
    "training_stats_scalar": {"value"},
    "training_stats_vector": {"values"},
    "log": {"level", "worker", "msg"},
    "plot": {"plot_str", "skip_validation"},
    "training_debug_image": {"key", "url"},
}
COMMON_EVENT_FIELDS = {"type", "timestamp", "iter", "metric", "variant"}
TASK_LISTING = ["id", "name", "type", "project", "status", "system_tags", "created"]
# The status a task ends in on the target, and the calls that take a new task there.
SETTLED = {
    "created": "created",
    "queued": "created",
    "in_progress": "stopped",
    "stopped": "stopped",
    "completed": "completed",
    "failed": "failed",
    "closed": "closed",
    "publishing": "published",
    "published": "published",
}
STATUS_CALLS = {
    "created": [],
    "stopped": ["started", "stopped"],
    "completed": ["started", "completed"],
    "failed": ["started", "failed"],
    "closed": ["started", "stopped", "close"],
    "published": ["started", "completed", "publish"],
}
# A model is created with what it is (weights, task, labels) and placed once every model exists: its comment
# and metadata may name a newer model.
MODEL_FIELDS = ("framework", "design", "labels", "task")
PLACED_MODEL_FIELDS = ("project", "parent", "tags", "system_tags", "comment")
SCHEDULER_STATE_PREVIEW = "scheduler internal state"  # the SDK's mark on a TriggerScheduler's state artifact
# What `tasks.edit` copies as it is (translated), besides execution and output destination.
TASK_FIELDS = ("name", "type", "comment", "tags", "parent", "script", "hyperparams", "configuration")
TASK_FIELDS += ("container", "runtime", "models")


class MigrationError(ServerError):
    """A permanent failure, naming the source object it happened to."""


@dataclass
class Inventory:
    """What the source holds of the selected projects (tasks and models listed by id, oldest first)."""

    projects: list[dict]
    queues: list[dict]
    tasks: list[dict]
    project_ids: set[str | None]

    def selects(self, project: str | None) -> bool:
        return project in self.project_ids


@dataclass
class Report:
    copied: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)  # objects already on the target from an earlier run
    notes: Counter = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)  # by phase

    def lines(self) -> list[str]:
        objects = ("projects", "queues", "tasks", "models")
        out = [f"{kind}: {self.copied[kind]} copied, {self.kept[kind]} already there" for kind in objects]
        out.append(
            f"with {self.copied['events']} events, {self.copied['artifacts']} artifacts and "
            f"{self.copied['files']} files ({_size(self.copied['bytes'])})"
        )
        out.append("time: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.seconds.items()))
        return out + [f"note: {note} ({count})" for note, count in sorted(self.notes.items())]

    @contextlib.contextmanager
    def timed(self, phase: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.monotonic() - started


class Migration:
    def __init__(
        self,
        source: Server,
        target: Server,
        ids: IdMap,
        projects: Sequence[str] = (),
        progress: bool = True,
    ):
        self.source, self.target, self.ids = source, target, ids
        self.selection = [name.strip("/") for name in projects]
        self.progress = progress
        self.translate = Translation(ids.targets, prefixes(source.endpoint, target.endpoint))
        self.report = Report()
        self._resumed: set[str] = set()  # tasks whose copy an earlier run began

    # what there is
    def inventory(self) -> Inventory:
        projects = [
            project
            for project in self.source.pages(
                "projects.get_all_ex",
                "projects",
                order_by=["created"],
                search_hidden=True,
                only_fields=["id", "name", "description", "system_tags", "tags", "default_output_destination"],
            )
            if wanted_project(project["name"], self.selection)
        ]
        project_ids: set[str | None] = {project["id"] for project in projects}
        if not self.selection:
            project_ids.add(None)  # tasks and models outside any project
        queues = list(
            self.source.pages(
                "queues.get_all_ex", "queues", order_by=["created"], only_fields=["id", "name", "system_tags", "tags"]
            )
        )
        tasks = [
            task
            for task in self.source.pages(
                "tasks.get_all_ex", "tasks", order_by=["created"], search_hidden=True, only_fields=TASK_LISTING
            )
            if task.get("project") in project_ids
        ]
        return Inventory(projects, queues, tasks, project_ids)

    def models(self, inventory: Inventory) -> Iterator[dict]:
        for model in self.source.pages("models.get_all_ex", "models", order_by=["created"]):
            if inventory.selects(model.get("project")):
                yield model

    def plan(self) -> list[str]:
        """What a run would copy, by kind, with the sizes the source reports (the dry run)."""
        inventory = self.inventory()
        pending = [task for task in inventory.tasks if self.ids.state(task["id"]) != DONE]
        models = [model for model in self.models(inventory) if self.ids.state(model["id"]) != DONE]
        events = artifacts = artifact_bytes = 0
        for task in self._bar(pending, "sizing tasks"):
            events += self.source.call("events.get_task_events", task=task["id"], batch_size=1).get("total") or 0
            doc = self.source.call("tasks.get_by_id", task=task["id"])["task"]
            for artifact in (doc.get("execution") or {}).get("artifacts") or []:
                artifacts += 1
                artifact_bytes += artifact.get("content_size") or 0
        weights = sum(self.source.size(model["uri"]) for model in models if self.source.holds(model.get("uri")))
        kinds = Counter(_kind(task) for task in pending)
        lines = [
            f"{name}: {len(items)} on the source, {sum(self.ids.state(i['id']) == DONE for i in items)} already copied"
            for name, items in (
                ("projects", inventory.projects),
                ("queues", inventory.queues),
                ("tasks", inventory.tasks),
            )
        ]
        lines += [
            f"to copy: {len(pending)} tasks ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items())) or 'none'}), "
            f"{events} events, {artifacts} artifacts ({_size(artifact_bytes)}), "
            f"{len(models)} models ({_size(weights)} of weights)",
        ]
        return lines

    # the copy
    def run(self) -> Report:
        timed = self.report.timed
        with timed("listing"):
            inventory = self.inventory()
        with timed("projects and queues"):
            self.copy_projects(inventory.projects)
            self.copy_queues(inventory.queues)
        with timed("task shells"):
            staging = self._staging_project()
            self.create_shells(inventory.tasks, staging)
        with timed("models"):
            models = list(self.models(inventory))
            self.copy_models(models, staging)
        with timed("tasks"):
            self.copy_tasks(inventory.tasks)
        if all(self.ids.state(item["id"]) == DONE for item in inventory.tasks + models):
            # With whatever an interrupted run created but could not record.
            self.target.call("projects.delete", project=staging, force=True, delete_contents=True)
        return self.report

    def _bar(self, items: Sequence, kind: str) -> Iterator:
        return tqdm(items, desc=kind, unit=kind.rstrip("s"), disable=not self.progress, leave=True, dynamic_ncols=True)

    def _done(self, kind: str, source_id: str) -> bool:
        if self.ids.state(source_id) == DONE:
            self.report.kept[kind] += 1
            return True
        return False

    def _find_by_name(self, service: str, name: str, **query) -> str | None:
        found = self.target.call(
            f"{service}.get_all_ex", name=f"^{re.escape(name)}$", only_fields=["id", "name"], **query
        )
        return next((item["id"] for item in found.get(service) or [] if item["name"] == name), None)

    def copy_projects(self, projects: list[dict]) -> None:
        def fields(project: dict) -> dict:
            kept = {key: project[key] for key in ("description", "system_tags", "tags") if project.get(key)}
            if project.get("default_output_destination"):
                kept["default_output_destination"] = self.translate.text(project["default_output_destination"])
            return kept

        self._copy_by_name("projects", projects, fields, search_hidden=True)

    def copy_queues(self, queues: list[dict]) -> None:
        tags = ("system_tags", "tags")
        self._copy_by_name("queues", queues, lambda queue: {key: queue[key] for key in tags if queue.get(key)})

    def _copy_by_name(self, service: str, items: list[dict], fields, **query) -> None:
        """Map each item to the target's of the same name, creating it (with `fields(item)`) where there is none."""
        for item in self._bar(items, service):
            if self._done(service, item["id"]):
                continue
            target_id = self._find_by_name(service, item["name"], **query)
            if target_id is None:
                target_id = self._call(service[:-1], item, f"{service}.create", name=item["name"], **fields(item))["id"]
            self.ids.record(service, item["id"], target_id, DONE, item["name"])
            self.report.copied[service] += 1

    def _staging_project(self) -> str:
        existing = self._find_by_name("projects", STAGING_PROJECT, search_hidden=True)
        if existing:
            return existing
        description = "tasks and models whose migration has begun but not ended; a new run of loop.migrate ends it"
        return self.target.call("projects.create", name=STAGING_PROJECT, description=description, system_tags=[HIDDEN])[
            "id"
        ]

    def create_shells(self, tasks: list[dict], staging: str) -> None:
        for task in self._bar(tasks, "task shells"):
            state = self.ids.state(task["id"])
            if state == SHELL:
                self._resumed.add(task["id"])
            if state is not None:
                continue
            created = self._call(
                "task", task, "tasks.create", name=task["name"] or "task", type=task["type"], **_staged(task, staging)
            )
            self.ids.record("tasks", task["id"], created["id"], SHELL, task["name"])

    def copy_models(self, models: list[dict], staging: str) -> None:
        """Two passes, as a model's metadata may name a newer model (a rollback names the model it rolled back
        from): every model is created first, with its weights, in the hidden project; then each gets its
        metadata, project, tags and published state."""
        for model in self._bar(models, "model weights"):
            if self.ids.state(model["id"]) is None:
                self._model_step(model, self._create_model, staging)
        for model in self._bar(models, "models"):
            if not self._done("models", model["id"]):
                self._model_step(model, self._place_model)
                self.report.copied["models"] += 1

    def _model_step(self, model: dict, step, *args) -> None:
        try:
            step(model, *args)
        except ServerError as error:
            raise MigrationError(f"model {model['name']!r} ({model['id']}): {error}") from None

    def _create_model(self, model: dict, staging: str) -> None:
        uri = self._copy_file(model["uri"], rewrite=False) if model.get("uri") else ""
        fields = self.translate.value({key: model[key] for key in MODEL_FIELDS if model.get(key)})
        self._drop_uncopied_link(fields, model, "task")
        created = self.target.call("models.create", name=model["name"], uri=uri, **fields, **_staged(model, staging))
        self.ids.record("models", model["id"], created["id"], SHELL, model["name"])

    def _place_model(self, model: dict) -> None:
        target_id = self.ids.target(model["id"])
        fields = self.translate.value({key: model[key] for key in PLACED_MODEL_FIELDS if model.get(key)})
        self._drop_uncopied_link(fields, model, "parent")
        self.target.call("models.edit", model=target_id, **fields)
        metadata = [self.translate.value(item) for item in (model.get("metadata") or {}).values()]
        if metadata:
            self.target.call("models.add_or_update_metadata", model=target_id, metadata=metadata)
        if model.get("ready"):
            self.target.call("models.set_ready", model=target_id, publish_task=False)
        self.ids.record("models", model["id"], target_id, DONE, model["name"])

    def copy_tasks(self, tasks: list[dict]) -> None:
        for task in self._bar(tasks, "tasks"):
            if self._done("tasks", task["id"]):
                continue
            target_id = self.ids.target(task["id"])
            try:
                self._copy_task(task["id"], target_id)
            except ServerError as error:
                self._call_quietly("events.delete_for_task", task=target_id, allow_locked=True)
                raise MigrationError(
                    f"task {task['name']!r} ({task['id']}): {error}; its unfinished copy {target_id} is in the "
                    f"hidden project {STAGING_PROJECT} until a new run completes it"
                ) from None
            self.ids.record("tasks", task["id"], target_id, DONE, task["name"])
            self.report.copied["tasks"] += 1

    def _copy_task(self, source_id: str, target_id: str) -> None:
        doc = self.source.call("tasks.get_by_id", task=source_id)["task"]
        settled = SETTLED.get(doc.get("status"), "stopped")
        if source_id in self._resumed and not self._restart(target_id, settled):
            return  # the earlier run had got to its last step
        fields = self.translate.value({key: doc[key] for key in TASK_FIELDS if doc.get(key) is not None})
        self._drop_uncopied_link(fields, doc, "parent")
        execution = {k: v for k, v in (doc.get("execution") or {}).items() if k not in ("artifacts", "queue")}
        fields["execution"] = self.translate.value(execution)
        destination = (doc.get("output") or {}).get("destination")
        if destination:
            fields["output_dest"] = self.translate.text(destination)
        self.target.call("tasks.edit", task=target_id, force=True, **fields)
        self._copy_events(source_id, target_id)
        self._copy_artifacts(doc, target_id)
        project = self.translate.text(doc["project"]) if doc.get("project") else None
        placed = {"system_tags": doc.get("system_tags") or [], **({"project": project} if project else {})}
        self.target.call("tasks.update", task=target_id, **placed)
        self._settle(doc, target_id, settled)

    def _restart(self, target_id: str, settled: str) -> bool:
        """Make a copy that an earlier run began ready to be done again; False when it had been completed."""
        status = self.target.call("tasks.get_by_id", task=target_id)["task"].get("status")
        if status == settled and settled != "created":
            return False
        if status != "created":
            self.target.call("tasks.reset", task=target_id, force=True)
        self.target.call("events.delete_for_task", task=target_id, allow_locked=True)
        return True

    def _settle(self, doc: dict, target_id: str, settled: str) -> None:
        status = doc.get("status")
        if settled != status:
            self.report.notes[f"{status} tasks arrive {settled}"] += 1
        calls = STATUS_CALLS[settled]
        for index, call in enumerate(calls):
            body = {"task": target_id, "force": True}
            if index == len(calls) - 1:
                body.update(
                    status_reason=doc.get("status_reason") or "", status_message=doc.get("status_message") or ""
                )
            if call == "publish":
                body["publish_model"] = False  # each model's own published state was copied with it
            self.target.call(f"tasks.{call}", **body)

    def _copy_events(self, source_id: str, target_id: str) -> None:
        copied, scroll_id = 0, None
        while True:
            query = {"task": source_id, "batch_size": EVENT_BATCH, "order": "asc"}
            if scroll_id:
                query["scroll_id"] = scroll_id
            answer = self.source.call("events.get_task_events", **query)
            events = answer.get("events") or []
            if not events:
                return
            self.target.send_lines("events.add_batch", [self._event(event, target_id) for event in events])
            copied += len(events)
            self.report.copied["events"] += len(events)
            scroll_id = answer.get("scroll_id")
            if not scroll_id or copied >= answer.get("total", float("inf")):
                return

    def _event(self, event: dict, target_id: str) -> dict:
        kept = COMMON_EVENT_FIELDS | EVENT_FIELDS.get(event.get("type"), set())
        copy = self.translate.value({key: value for key, value in event.items() if key in kept})
        if event.get("type") == "training_debug_image" and event.get("url"):
            copy["url"] = self._copy_file(event["url"], rewrite=False)
        copy["task"] = target_id
        return copy

    def _copy_artifacts(self, doc: dict, target_id: str) -> None:
        artifacts = []
        for artifact in (doc.get("execution") or {}).get("artifacts") or []:
            if is_scheduler_state(artifact):
                self.report.notes["trigger scheduler states left behind"] += 1
                continue
            copy = self.translate.value({key: value for key, value in artifact.items() if key != "uri"})
            if artifact.get("uri"):
                copy["uri"], digest = self._copy_file_hashed(artifact["uri"], rewrite=is_text_artifact(artifact))
                if digest and artifact.get("hash"):
                    copy["hash"] = digest
            artifacts.append(copy)
        if artifacts:
            self.target.call("tasks.add_or_update_artifacts", task=target_id, artifacts=artifacts, force=True)
        self.report.copied["artifacts"] += len(artifacts)

    # files
    def _copy_file(self, url: str, rewrite: bool) -> str:
        return self._copy_file_hashed(url, rewrite)[0]

    def _copy_file_hashed(self, url: str, rewrite: bool) -> tuple[str, str | None]:
        """The target URL of the source file at `url` once copied (its text translated when `rewrite`), and its
        SHA-256 when its content changed; a URL outside the source's files server is kept as it is."""
        if not self.source.holds(url):
            self.report.notes["file URLs outside the source's files server kept as they were"] += 1
            return url, None
        path = self.translate.text(unquote(self.source.object_path(url)))
        changed = None
        with tempfile.TemporaryFile() as handle:
            size, _ = self.source.download(url, handle)
            if rewrite and size <= MAX_REWRITTEN_BYTES:
                handle.seek(0)
                original = handle.read()
                translated = self.translate.content(original)
                if translated != original:
                    handle.seek(0)
                    handle.truncate()
                    handle.write(translated)
                    changed, size = hashlib.sha256(translated).hexdigest(), len(translated)
            self.report.copied["bytes"] += size
            new_url = self.target.upload(path, handle, posixpath.basename(path) or "file")
        self.report.copied["files"] += 1
        return new_url, changed

    # helpers
    def _drop_uncopied_link(self, fields: dict, item: dict, key: str) -> None:
        """A link to an object that is not migrated (outside `--project`) would name nothing on the target."""
        if item.get(key) and self.ids.target(item[key]) is None:
            del fields[key]
            self.report.notes[f"links ({key}) to objects outside the migrated projects dropped"] += 1

    def _call(self, kind: str, item: dict, action: str, **body) -> dict:
        try:
            return self.target.call(action, **body)
        except ServerError as error:
            raise MigrationError(f"{kind} {item.get('name')!r} ({item['id']}): {error}") from None

    def _call_quietly(self, action: str, **body) -> None:
        try:
            self.target.call(action, **body)
        except ServerError as error:
            log.warning("%s %s: %s", action, body, error)


def wanted_project(name: str, selection: Sequence[str]) -> bool:
    """Whether project `name` is migrated: under one of the `selection` (all when empty), and no lock or the
    migration's own hidden project."""
    if name.split("/")[-1] in (registry.PROMOTION_LOCK, STAGING_PROJECT):
        return False
    return not selection or any(name == chosen or name.startswith(chosen + "/") for chosen in selection)


def is_scheduler_state(artifact: dict) -> bool:
    return (
        artifact.get("key") == "state" and (artifact.get("type_data") or {}).get("preview") == SCHEDULER_STATE_PREVIEW
    )


def is_text_artifact(artifact: dict) -> bool:
    """Whether an artifact's file is text to translate (a dict or string artifact, JSON or text content)."""
    return artifact.get("type") in ("dict", "string") or is_text((artifact.get("type_data") or {}).get("content_type"))


def _staged(item: dict, staging: str) -> dict:
    """Where a copy waits until complete: the hidden project, unless it belongs to none (it could not leave)."""
    return {"project": staging} if item.get("project") else {}


def _kind(task: dict) -> str:
    if "dataset" in (task.get("system_tags") or []):
        return "dataset versions"
    return "pipeline runs" if task.get("type") == "controller" else "other"


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB"

"""What one server holds, read through the SDK as its users read it, in digests that another server's copy must
match: `python -m loop.migrate.snapshot --config CONF --out FILE [--project P ...] [--as-copied-to TARGET_CONF
--id-map MAP]`.

With `--as-copied-to`, the source's values are first translated as the migration translates them (ids to the
copies' ids, URLs to the target's servers, running statuses to stopped), so the two snapshots compare equal
field by field when the copy is faithful. The SDK reads one server per process (its configuration is global),
hence a process per server.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

CLIENT_VARIABLES = (
    "CLEARML_API_HOST",
    "CLEARML_WEB_HOST",
    "CLEARML_FILES_HOST",
    "CLEARML_API_ACCESS_KEY",
    "CLEARML_API_SECRET_KEY",
    "CLEARML_AUTH_TOKEN",
)
CONSOLE_LINES = 1_000_000
PLOT_ITERATIONS = 1_000_000


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(url: str, translate=None) -> str:
    """SHA-256 of the file at `url`, streamed; with `translate`, of its text translated as the copy translates
    it (files up to the size the copy rewrites)."""
    from clearml import StorageManager

    from .translate import MAX_REWRITTEN_BYTES

    local = StorageManager.get_local_copy(url, extract_archive=False, force_download=True)
    if local is None:
        return f"unreadable: {url}"
    path = Path(local)
    if translate is not None and path.stat().st_size <= MAX_REWRITTEN_BYTES:
        return hashlib.sha256(translate.content(path.read_bytes())).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class Reader:
    def __init__(self, projects: list[str], translation=None):
        from clearml.backend_api.session.client import APIClient

        from .copier import SETTLED

        self.client = APIClient()
        self.selection = projects
        self.t = translation
        self.settled = SETTLED if translation is not None else None

    def tr(self, value):
        return self.t.value(value) if self.t is not None else value

    def link(self, object_id: str | None) -> str | None:
        """A link as the copy has it: to the object's copy, or none when the object was not migrated."""
        if self.t is None or not object_id:
            return object_id or None
        return self.t.targets.get(object_id)

    def read(self) -> dict:
        from .copier import wanted_project

        projects = [
            p
            for p in self.client.projects.get_all(search_hidden=True, only_fields=["id", "name"])
            if wanted_project(p.name, self.selection)
        ]
        names = {p.id: p.name for p in projects}
        if not self.selection:
            names[None] = None
        queues = sorted(q.name for q in self.client.queues.get_all(only_fields=["name"]))
        task_ids = [
            t.id
            for t in _all(self.client.tasks.get_all, search_hidden=True, only_fields=["id", "project"])
            if t.project in names
        ]
        models = self.models(names)
        return {
            "projects": sorted(name for name in names.values() if name is not None),
            "queues": queues,
            "tasks": {self.tr(task_id): self.task(task_id, names) for task_id in task_ids},
            "models": models,
            "creation order": [self.tr(task_id) for task_id in task_ids] + list(models),
            "production": self.production(),
        }

    def task(self, task_id: str, names: dict) -> dict:
        from clearml import Dataset, Task

        from .copier import TASK_FIELDS, is_scheduler_state, is_text_artifact

        task = Task.get_task(task_id=task_id)
        data = task.data.to_dict()
        status = data.get("status")
        execution = {k: v for k, v in (data.get("execution") or {}).items() if k not in ("artifacts", "queue")}
        fields = {key: data.get(key) for key in TASK_FIELDS} | {"execution": execution}
        fields = self.tr(fields) | {"parent": self.link(data.get("parent"))}
        record = {
            "name": data.get("name"),
            "project": names.get(data.get("project")),
            "status": self.settled.get(status, "stopped") if self.settled else status,
            "system_tags": sorted(data.get("system_tags") or []),
            "fields": _digest(fields),
            "scalars": _digest(task.get_all_reported_scalars()),
            "scalar_times": _digest(task.get_all_reported_scalars(x_axis="timestamp")),
            "plots": _digest(self.tr([_plot(p) for p in task.get_reported_plots(max_iterations=PLOT_ITERATIONS)])),
            "console": _digest(self.tr(list(task.get_reported_console_output(CONSOLE_LINES)))),
            "debug_samples": self.debug_samples(task_id),
            "artifacts": {
                artifact["key"]: _file_digest(artifact["uri"], self.t if is_text_artifact(artifact) else None)
                if artifact.get("uri")
                else None
                for artifact in (data.get("execution") or {}).get("artifacts") or []
                if not is_scheduler_state(artifact)
            },
        }
        if "dataset" in (data.get("system_tags") or []) and status in ("completed", "published"):
            dataset = Dataset.get(dataset_id=task_id)
            record["dataset"] = {
                "version": dataset.version,
                "graph": self.tr(dataset.get_dependency_graph()),
                "files": _digest(sorted((e.relative_path, e.hash, e.size) for e in dataset.file_entries)),
            }
        return record

    def debug_samples(self, task_id: str) -> dict:
        samples = {}
        for event in _events(self.client, task_id, "training_debug_image"):
            key = f"{event['metric']}/{event['variant']}/{event['iter']}"
            samples[key] = _file_digest(event["url"]) if event.get("url") else None
        return samples

    def models(self, names: dict) -> dict:
        from clearml import Model

        found = {}
        for raw in _all(self.client.models.get_all, only_fields=["id", "project"]):
            if raw.project not in names:
                continue
            model = Model(model_id=raw.id)
            found[self.tr(raw.id)] = {
                "name": model.name,
                "project": names.get(model.project),
                "task": self.link(model.task),
                "comment": self.tr(model.comment),
                "tags": sorted(model.tags or []),
                "system_tags": sorted(model.system_tags or []),
                "ready": model.published,
                "labels": model.labels,
                "metadata": self.tr(model.get_all_metadata()),
                "weights": _file_digest(model.url) if model.url else None,
            }
        return found

    def production(self) -> str | None:
        """The loop's production model, when its project is among those migrated."""
        from loop import registry, settings

        from .copier import wanted_project

        if not wanted_project(settings.PROJECT, self.selection):
            return None
        model = registry.production_model()
        return self.tr(model.id) if model else None


def _plot(plot: dict) -> dict:
    return {key: plot.get(key) for key in ("metric", "variant", "iter", "plot_str", "timestamp")}


def _all(method, **query) -> list:
    """Every document a get_all lists, a page at a time."""
    found, page = [], 0
    while True:
        batch = method(**query, order_by=["created"], page=page, page_size=500)
        found.extend(batch)
        if len(batch) < 500:
            return found
        page += 1


def _events(client, task_id: str, event_type: str):
    scroll_id, seen = None, 0
    while True:
        answer = client.events.get_task_events(
            task=task_id, event_type=event_type, batch_size=500, scroll_id=scroll_id, order="asc"
        )
        events = answer.events or []
        yield from events
        seen += len(events)
        scroll_id = answer.scroll_id
        if not events or not scroll_id or seen >= (answer.total or 0):
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--project", action="append", default=[])
    parser.add_argument("--as-copied-to", type=Path, help="the target's clearml.conf (for the source's snapshot)")
    parser.add_argument("--id-map", type=Path)
    args = parser.parse_args(argv)
    for name in CLIENT_VARIABLES:
        os.environ.pop(name, None)
    os.environ["CLEARML_CONFIG_FILE"] = str(args.config)
    translation = None
    if args.as_copied_to:
        from .idmap import IdMap
        from .server import Endpoint
        from .translate import Translation, prefixes

        source, target = Endpoint.from_config(args.config), Endpoint.from_config(args.as_copied_to)
        ids = IdMap(args.id_map, source.api, target.api)
        translation = Translation(ids.targets, prefixes(source, target))
    args.out.write_text(json.dumps(Reader(args.project, translation).read(), sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())

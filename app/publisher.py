"""Publishing feedback: pending items become a new child version of the current ClearML dataset that holds only
those items, as `<label>/<sha256>.<ext>`. That finalized version is what the retraining trigger reacts to.

Exactly-once bookkeeping lives in `FeedbackStore` (see its docstring); this module performs the steps in the
order that makes it safe: claim the batch, record the draft's id, upload, finalize, then mark published.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from clearml import Dataset, Task

from app.feedback_store import Batch, FeedbackStore
from app.periodic import PeriodicWorker
from tasks.common import latest_dataset_id

log = logging.getLogger(__name__)

_FINALIZED = {"completed", "published", "closed"}


@dataclass(frozen=True)
class DatasetVersion:
    id: str
    version: str | None
    created: str
    parents: list[str]
    files_added: int | None


class Publisher:
    def __init__(
        self,
        store: FeedbackStore,
        project: str,
        name: str,
        *,
        output_uri: str | None = None,
    ):
        self.store = store
        self.project = project
        self.name = name
        self.output_uri = output_uri
        self._lock = threading.Lock()  # the button and the automatic trigger never publish concurrently
        self._versions: dict[str, DatasetVersion] = {}  # finalized versions never change

    def publish_pending(self) -> list[str]:
        """Publish every unpublished item; returns the ids of the dataset versions that now hold them.

        Raises when the server or the upload fails; the items stay unpublished and the next call retries.
        """
        published = []
        with self._lock:
            while (batch := self.store.claim_batch()) is not None:
                published.append(self._publish(batch))
        return published

    def current_version_id(self) -> str | None:
        return latest_dataset_id(self.project, self.name)

    def versions(self) -> list[DatasetVersion]:
        """Finalized versions of the dataset with their parents, newest first."""
        listed = Dataset.list_datasets(dataset_project=self.project, partial_name=self.name, only_completed=True)
        result = []
        for entry in sorted(listed, key=lambda e: str(e.get("created")), reverse=True):
            if entry["name"] != self.name:  # partial_name is a regex search
                continue
            if entry["id"] not in self._versions:
                dataset = Dataset.get(dataset_id=entry["id"])
                self._versions[entry["id"]] = DatasetVersion(
                    id=entry["id"],
                    version=entry.get("version"),
                    created=str(entry.get("created")),
                    parents=list(dataset.get_dependency_graph().get(entry["id"], [])),
                    files_added=len(dataset.list_added_files()),
                )
            result.append(self._versions[entry["id"]])
        return result

    def _publish(self, batch: Batch) -> str:
        if batch.dataset_id is not None and _is_finalized(batch.dataset_id):
            # A previous attempt finalized the version but stopped before recording it.
            self.store.mark_published(batch, batch.dataset_id)
            return batch.dataset_id
        parent = self.current_version_id()
        dataset = Dataset.create(
            dataset_name=self.name,
            dataset_project=self.project,
            parent_datasets=[parent] if parent else None,
            description=f"{len(batch.items)} feedback item(s) from the app, batch {batch.id}",
        )
        batch = self.store.record_draft(batch, dataset.id)
        staging = self.store.root / "publishing" / batch.id
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for sha in batch.items:
                item = self.store.get(sha)
                target = staging / item.label / f"{item.sha256}{Path(item.file_name).suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.store.image_path(item), target)
            dataset.add_files(path=str(staging))
            dataset.upload(show_progress=False, output_url=self.output_uri)
            dataset.finalize()
        except Exception:
            _abandon_draft(dataset)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.store.mark_published(batch, dataset.id)
        log.info(
            "Published %d feedback item(s) as dataset version %s (parent %s)", len(batch.items), dataset.id, parent
        )
        return dataset.id


def _abandon_draft(dataset: Dataset) -> None:
    """Mark a draft that failed as failed and stop the SDK's keep-alive threads for it.

    clearml 2.1.12 keeps pinging an unfinalized dataset's task and flushing its log at interpreter exit, with no
    public way to stop either; left running, they retry forever once the server is gone. The retry builds a fresh
    version, so the draft is never finalized.
    """
    try:
        dataset._task.mark_failed(status_reason="feedback upload failed; retried as a new version", force=True)
        dataset._task.close()
    except Exception:
        log.exception("Could not mark the failed draft %s as failed", dataset.id)
    if dataset._task_pinger is not None:
        dataset._task_pinger.unregister()
        dataset._task_pinger = None


def _is_finalized(dataset_id: str) -> bool:
    try:
        return Task.get_task(task_id=dataset_id).get_status() in _FINALIZED
    except ValueError:  # the draft never reached the server
        return False


class AutoPublisher(PeriodicWorker):
    """Publishes once `every_n` items are unpublished, or the oldest has waited `every_minutes`."""

    thread_name = "auto-publisher"

    def __init__(self, publisher: Publisher, every_n: int, every_minutes: float, check_interval_s: float = 2.0):
        super().__init__(check_interval_s)
        self.publisher = publisher
        self.every_n = every_n
        self.every_minutes = every_minutes
        self.last_error: str | None = None

    def due(self) -> bool:
        unpublished = self.publisher.store.unpublished()
        if not unpublished:
            return False
        if self.every_n > 0 and len(unpublished) >= self.every_n:
            return True
        oldest = datetime.fromisoformat(unpublished[0].created_at)
        waited_minutes = (datetime.now(timezone.utc) - oldest).total_seconds() / 60.0
        return self.every_minutes > 0 and waited_minutes >= self.every_minutes

    def tick(self) -> None:
        if not self.due():
            return
        try:
            self.publisher.publish_pending()
            self.last_error = None
        except Exception as exc:  # kept unpublished; retried on the next check
            self.last_error = f"{time.strftime('%H:%M:%S')} {exc}"
            log.exception("Automatic publishing failed; will retry")

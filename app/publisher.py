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

from app.feedback_store import Batch, FeedbackStore
from app.periodic import PeriodicWorker
from loop import datasets

log = logging.getLogger(__name__)


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
        return datasets.latest_version_id(self.project, self.name)

    def versions(self) -> list[DatasetVersion]:
        """Finalized versions of the dataset with their parents, newest first."""
        result = []
        for entry in datasets.finalized_versions(self.project, self.name):
            if entry["id"] not in self._versions:
                parents, files_added = datasets.lineage(entry["id"])
                self._versions[entry["id"]] = DatasetVersion(
                    id=entry["id"],
                    version=entry.get("version"),
                    created=str(entry.get("created")),
                    parents=parents,
                    files_added=files_added,
                )
            result.append(self._versions[entry["id"]])
        return result

    def _publish(self, batch: Batch) -> str:
        if batch.dataset_id is not None and datasets.is_finalized(batch.dataset_id):
            # A previous attempt finalized the version but stopped before recording it.
            self.store.mark_published(batch, batch.dataset_id)
            return batch.dataset_id
        staging = self.store.root / "publishing" / batch.id
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for sha in batch.items:
                item = self.store.get(sha)
                target = staging / item.label / f"{item.sha256}{Path(item.file_name).suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.store.image_path(item), target)
            parent = self.current_version_id()
            draft = datasets.create_draft(
                parent, self.project, self.name, f"{len(batch.items)} feedback item(s) from the app, batch {batch.id}"
            )
            batch = self.store.record_draft(batch, draft.id)
            # A failed upload marks the draft failed; the retry builds a fresh version.
            version_id = datasets.finish(draft, staging, self.output_uri)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.store.mark_published(batch, version_id)
        log.info(
            "Published %d feedback item(s) as dataset version %s (parent %s)", len(batch.items), version_id, parent
        )
        return version_id


class AutoPublisher(PeriodicWorker):
    """Publishes once `every_n` items are unpublished, or the oldest has waited `every_minutes`."""

    thread_name = "app-auto-publisher"

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

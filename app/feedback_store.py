"""Durable store of user feedback: the original image bytes, what the model said about them, and the dataset
version each item was published in.

Layout under `root`:

- `items/<sha256>/image.<ext>` and `items/<sha256>/meta.json`: one directory per distinct image. It is written
  and fsynced under `tmp/`, then renamed into place, so it exists complete or not at all, and the rename fails
  when the same content is already stored (de-duplication by content hash, race-free).
- `batches/<batch id>.json`: the publishing journal. A batch lists the items of one dataset version-to-be,
  records the draft dataset id before anything is uploaded, and is marked published once that version is
  finalized. An item belongs to at most one batch, and at most one batch is open at a time.
- `tmp/`: scratch space for the atomic writes; a crash's leftovers are removed on open, so one store directory
  belongs to one running app.

Exactly-once publishing: an item is pending until its batch is marked published. A batch that is still open
after a failure or a crash is claimed again by the next publishing attempt with the same items; the publisher
asks the server whether the recorded draft was finalized (then it only marks the batch published) or not
(then it builds a fresh version). Finalizing on the server is the single commit point, so every item ends up
in exactly one finalized version.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from app.labels import normalize_label
from classifier.images import sha256_bytes
from common.files import fsync_folder, write_atomically, write_durably

log = logging.getLogger(__name__)

_EXTENSION = re.compile(r"[a-z0-9]{1,5}")


@dataclass(frozen=True)
class FeedbackItem:
    sha256: str
    label: str
    prediction: str | None
    probabilities: dict[str, float]
    model_id: str | None
    created_at: str
    file_name: str
    size: int
    original_name: str | None = None
    client: str | None = None  # who gave it: the signed-in user or the client address


@dataclass(frozen=True)
class Batch:
    id: str
    items: tuple[str, ...]
    created_at: str
    dataset_id: str | None = None
    published_at: str | None = None

    @property
    def is_published(self) -> bool:
        return self.published_at is not None


@dataclass(frozen=True)
class AddResult:
    item: FeedbackItem
    created: bool  # False: the same image was already stored, nothing changed


@dataclass(frozen=True)
class LabelCount:
    label: str
    pending: int = 0
    published: int = 0


@dataclass
class _Index:
    items: dict[str, FeedbackItem] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    batch_of: dict[str, str] = field(default_factory=dict)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._items_dir = self.root / "items"
        self._batches_dir = self.root / "batches"
        self._tmp_dir = self.root / "tmp"
        for folder in (self._items_dir, self._batches_dir, self._tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Anything left in tmp/ was never acknowledged: a crash interrupted its write.
        for leftover in self._tmp_dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        self._lock = threading.RLock()
        self._index = self._load()

    # -- writing ---------------------------------------------------------------------------------------------

    def add(
        self,
        data: bytes,
        *,
        label: str,
        ext: str,
        prediction: str | None = None,
        probabilities: dict[str, float] | None = None,
        model_id: str | None = None,
        original_name: str | None = None,
        client: str | None = None,
    ) -> AddResult:
        """Store `data` durably under `label`; returns once it survives a crash. Duplicates are not stored."""
        label = normalize_label(label)
        if not _EXTENSION.fullmatch(ext):
            raise ValueError(f"Bad file extension {ext!r}")
        if not data:
            raise ValueError("Refusing to store an empty file")
        digest = sha256_bytes(data)
        existing = self.get(digest)
        if existing is not None:
            return AddResult(existing, created=False)
        item = FeedbackItem(
            sha256=digest,
            label=label,
            prediction=prediction,
            probabilities={name: float(p) for name, p in (probabilities or {}).items()},
            model_id=model_id,
            created_at=utc_now(),
            file_name=f"image.{ext}",
            size=len(data),
            original_name=original_name,
            client=client,
        )
        # Written and fsynced outside the lock, so concurrent submissions do not queue behind each other's disk.
        staging = self._tmp_dir / uuid.uuid4().hex
        staging.mkdir()
        write_durably(staging / item.file_name, data)
        write_durably(staging / "meta.json", json.dumps(asdict(item), indent=1).encode())
        fsync_folder(staging)
        with self._lock:
            try:
                os.rename(staging, self._items_dir / digest)
            except OSError:
                # A concurrent submission of the same content got there first.
                shutil.rmtree(staging)
                return AddResult(self._index.items.get(digest) or self._read_item(self._items_dir / digest), False)
            fsync_folder(self._items_dir)
            self._index.items[digest] = item
            return AddResult(item, created=True)

    def claim_batch(self) -> Batch | None:
        """The batch to publish next: the open one left by a failure or crash, else all pending items."""
        with self._lock:
            open_batch = self.open_batch()
            if open_batch is not None:
                return open_batch
            pending = self.pending()
            if not pending:
                return None
            batch = Batch(
                id=f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
                items=tuple(item.sha256 for item in pending),
                created_at=utc_now(),
            )
            self._save_batch(batch)
            return batch

    def record_draft(self, batch: Batch, dataset_id: str) -> Batch:
        """Remember the dataset version being built for `batch` before its files are uploaded."""
        return self._update_batch(batch, dataset_id=dataset_id)

    def mark_published(self, batch: Batch, dataset_id: str) -> Batch:
        return self._update_batch(batch, dataset_id=dataset_id, published_at=utc_now())

    # -- reading ---------------------------------------------------------------------------------------------

    def items(self) -> list[FeedbackItem]:
        with self._lock:
            return sorted(self._index.items.values(), key=lambda item: (item.created_at, item.sha256))

    def get(self, sha256: str) -> FeedbackItem | None:
        with self._lock:
            return self._index.items.get(sha256)

    def image_path(self, item: FeedbackItem) -> Path:
        return self._items_dir / item.sha256 / item.file_name

    def pending(self) -> list[FeedbackItem]:
        """Items not yet in any batch, oldest first."""
        with self._lock:
            return [item for item in self.items() if item.sha256 not in self._index.batch_of]

    def open_batch(self) -> Batch | None:
        with self._lock:
            return next((b for b in self._index.batches.values() if not b.is_published), None)

    def batches(self) -> list[Batch]:
        with self._lock:
            return sorted(self._index.batches.values(), key=lambda batch: batch.created_at)

    def published_in(self, sha256: str) -> str | None:
        """The dataset version that holds the item, or None while it is unpublished."""
        with self._lock:
            batch_id = self._index.batch_of.get(sha256)
            batch = self._index.batches.get(batch_id) if batch_id else None
            return batch.dataset_id if batch is not None and batch.is_published else None

    def label_counts(self) -> list[LabelCount]:
        with self._lock:
            counts: dict[str, LabelCount] = {}
            for item in self._index.items.values():
                current = counts.get(item.label, LabelCount(item.label))
                if self.published_in(item.sha256) is None:
                    counts[item.label] = replace(current, pending=current.pending + 1)
                else:
                    counts[item.label] = replace(current, published=current.published + 1)
            return [counts[label] for label in sorted(counts)]

    def labels(self) -> list[str]:
        with self._lock:
            return sorted({item.label for item in self._index.items.values()})

    def unpublished(self) -> list[FeedbackItem]:
        """Items in no published dataset version yet (pending or in an open batch), oldest first."""
        with self._lock:
            return [item for item in self.items() if self.published_in(item.sha256) is None]

    def unpublished_count(self) -> int:
        return len(self.unpublished())

    # -- internals -------------------------------------------------------------------------------------------

    def _update_batch(self, batch: Batch, **changes) -> Batch:
        with self._lock:
            current = self._index.batches[batch.id]
            if current.is_published:
                raise ValueError(f"Batch {batch.id} is already published in dataset {current.dataset_id}")
            updated = replace(current, **changes)
            self._save_batch(updated)
            return updated

    def _save_batch(self, batch: Batch) -> None:
        write_atomically(
            self._batches_dir / f"{batch.id}.json",
            json.dumps(asdict(batch), indent=1).encode(),
            durable=True,
            tmp_dir=self._tmp_dir,
        )
        self._index.batches[batch.id] = batch
        for sha in batch.items:
            self._index.batch_of[sha] = batch.id

    def _read_item(self, folder: Path) -> FeedbackItem:
        return FeedbackItem(**json.loads((folder / "meta.json").read_text()))

    def _load(self) -> _Index:
        index = _Index()
        for folder in self._items_dir.iterdir():
            try:
                item = self._read_item(folder)
            except (OSError, ValueError, TypeError) as exc:
                log.error("Skipping unreadable feedback item %s: %s", folder, exc)
                continue
            index.items[item.sha256] = item
        for path in self._batches_dir.glob("*.json"):
            raw = json.loads(path.read_text())
            batch = Batch(**{**raw, "items": tuple(raw["items"])})
            index.batches[batch.id] = batch
            for sha in batch.items:
                index.batch_of[sha] = batch.id
        return index

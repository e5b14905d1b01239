"""The review queue (active learning): the uploads the model was least sure about, for a person to label.

Only used when the operator enables it (`--review-keep`: users agreed that their uploads may be kept). An
upload's uncertainty is its top confidence, or its margin over the runner-up (`by`); lower is less sure. The
queue keeps at most `capacity` uploads, the least sure ones, and none older than `max_age_s`. Layout under
`root`: `queue.sqlite3` (one row per upload) and `images/<sha256>.<ext>`, written to a temporary name, fsynced
and renamed, so a listed image is always complete.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common.files import write_atomically

BY = ("confidence", "margin")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review (
    sha256 TEXT PRIMARY KEY,
    measure REAL NOT NULL,
    at REAL NOT NULL,
    model_id TEXT NOT NULL,
    prediction_id INTEGER,
    probabilities TEXT NOT NULL,
    format TEXT NOT NULL,
    file_name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_measure ON review (measure);
"""


@dataclass(frozen=True)
class ReviewItem:
    sha256: str
    measure: float  # top confidence or margin: lower is less sure
    at: float
    model_id: str
    prediction_id: int | None
    probabilities: dict[str, float]
    format: str
    file_name: str

    @property
    def top(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


def uncertainty_measure(probabilities: dict[str, float], by: str) -> float:
    ranked = sorted(probabilities.values(), reverse=True)
    if by == "confidence":
        return ranked[0]
    return ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)


class ReviewQueue:
    def __init__(self, root: str | Path, capacity: int = 200, max_age_s: float = 7 * 86400, by: str = "margin"):
        if by not in BY:
            raise ValueError(f"by must be one of {BY}, not {by!r}")
        self.root = Path(root)
        self.images = self.root / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.capacity, self.max_age_s, self.by = capacity, max_age_s, by
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "queue.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def offer(
        self,
        data: bytes,
        *,
        sha256: str,
        probabilities: dict[str, float],
        model_id: str,
        prediction_id: int | None,
        image_format: str,
        extension: str,
        now: float | None = None,
    ) -> bool:
        """Keep the upload if it is among the `capacity` least sure ones; True when it was kept."""
        now = time.time() if now is None else now
        measure = uncertainty_measure(probabilities, self.by)
        with self._lock:
            self._prune(now)
            count, most_sure = self._db.execute("SELECT COUNT(*), MAX(measure) FROM review").fetchone()
            if count >= self.capacity and measure >= most_sure:
                return False
            if self._db.execute("SELECT 1 FROM review WHERE sha256 = ?", (sha256,)).fetchone():
                return True
            file_name = f"{sha256}.{extension}"
            write_atomically(self.images / file_name, data, durable=True)
            self._db.execute(
                "INSERT INTO review VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sha256, measure, now, model_id, prediction_id, json.dumps(probabilities), image_format, file_name),
            )
            self._prune(now)
            return True

    def items(self, now: float | None = None) -> list[ReviewItem]:
        """The kept uploads, least sure first."""
        with self._lock:
            self._prune(time.time() if now is None else now)
            rows = self._db.execute("SELECT * FROM review ORDER BY measure, at").fetchall()
        return [_item(row) for row in rows]

    def next(self) -> ReviewItem | None:
        items = self.items()
        return items[0] if items else None

    def get(self, sha256: str) -> ReviewItem | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM review WHERE sha256 = ?", (sha256,)).fetchone()
        return _item(row) if row else None

    def image_path(self, item: ReviewItem) -> Path:
        return self.images / item.file_name

    def remove(self, sha256: str) -> None:
        with self._lock:
            self._delete(self._db.execute("SELECT sha256, file_name FROM review WHERE sha256 = ?", (sha256,)))

    def _prune(self, now: float) -> None:
        self._delete(self._db.execute("SELECT sha256, file_name FROM review WHERE at < ?", (now - self.max_age_s,)))
        self._delete(
            self._db.execute(
                "SELECT sha256, file_name FROM review ORDER BY measure, at LIMIT -1 OFFSET ?", (self.capacity,)
            )
        )

    def _delete(self, rows) -> None:
        for sha256, file_name in rows.fetchall():
            self._db.execute("DELETE FROM review WHERE sha256 = ?", (sha256,))
            (self.images / file_name).unlink(missing_ok=True)


def _item(row) -> ReviewItem:
    sha256, measure, at, model_id, prediction_id, probabilities, image_format, file_name = row
    return ReviewItem(sha256, measure, at, model_id, prediction_id, json.loads(probabilities), image_format, file_name)

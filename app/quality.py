"""Live quality of the served models: every prediction is logged, and feedback on it closes the loop.

One SQLite table (`predictions`, in `<data dir>/quality.sqlite3`) holds a row per prediction the app served:
model id, top class, its confidence and margin over the runner-up, time, client. Feedback on a prediction fills
in its label. From these rows come the figures: agreement rate (feedback label == top class) per model version,
per class (the label the user gave) and per time bucket, the distribution of top confidences, and how many
feedback labels named a class the model does not know. The log is bounded: beyond `max_rows` the oldest rows
are dropped. No image is stored here.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CONFIDENCE_BINS = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    model_id TEXT NOT NULL,
    top TEXT NOT NULL,
    confidence REAL NOT NULL,
    margin REAL NOT NULL,
    sha256 TEXT NOT NULL,
    client TEXT,
    label TEXT,
    known INTEGER,
    feedback_at REAL
);
CREATE INDEX IF NOT EXISTS predictions_model ON predictions (model_id, feedback_at);
"""


@dataclass(frozen=True)
class Agreement:
    feedback: int
    agreed: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.feedback if self.feedback else None


@dataclass(frozen=True)
class ModelQuality:
    model_id: str
    predictions: int
    agreement: Agreement
    per_class: dict[str, Agreement]  # by the label users gave
    over_time: dict[float, Agreement]  # by the start (epoch seconds) of each time bucket of the prediction
    confidence_histogram: list[int]  # predictions per tenth of top confidence, [0, 0.1) ... [0.9, 1.0]
    unknown_labels: int  # feedback naming a class the model does not know
    recent: Agreement  # the last `window` feedback items


@dataclass(frozen=True)
class QualityAlert:
    model_id: str
    recent: Agreement
    threshold: float

    def message(self) -> str:
        return (
            f"Agreement with feedback on model {self.model_id} dropped to {self.recent.rate:.0%} over the last "
            f"{self.recent.feedback} feedback items (threshold {self.threshold:.0%})."
        )


@dataclass(frozen=True)
class QualityThreshold:
    """A drop: agreement over the last `window` feedback items (at least `min_feedback` of them) below `rate`."""

    rate: float = 0.7
    window: int = 50
    min_feedback: int = 10

    def alert(self, quality: ModelQuality) -> QualityAlert | None:
        recent = quality.recent
        if recent.feedback >= self.min_feedback and recent.rate < self.rate:
            return QualityAlert(quality.model_id, recent, self.rate)
        return None


class PredictionLog:
    def __init__(self, path: str | Path, max_rows: int = 100_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a crash may lose the last rows, never corrupt the file
        self._db.executescript(_SCHEMA)

    def record_prediction(
        self,
        model_id: str,
        probabilities: dict[str, float],
        sha256: str,
        client: str | None = None,
        at: float | None = None,
    ) -> int:
        """Log one served prediction; returns its id."""
        ranked = sorted(probabilities.values(), reverse=True)
        top = max(probabilities, key=probabilities.__getitem__)
        margin = ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO predictions (at, model_id, top, confidence, margin, sha256, client) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time() if at is None else at, model_id, top, ranked[0], margin, sha256, client),
            )
            self._db.execute("DELETE FROM predictions WHERE id <= ?", (cursor.lastrowid - self.max_rows,))
            return cursor.lastrowid

    def record_feedback(self, prediction_id: int, label: str, known: bool, at: float | None = None) -> bool:
        """Close the loop on a logged prediction; False when it is no longer in the log."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE predictions SET label = ?, known = ?, feedback_at = ? WHERE id = ?",
                (label, int(known), time.time() if at is None else at, prediction_id),
            )
            return cursor.rowcount == 1

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]

    def models(self) -> list[str]:
        """Model ids in the log, most recently used first."""
        with self._lock:
            rows = self._db.execute("SELECT model_id FROM predictions GROUP BY model_id ORDER BY MAX(id) DESC")
            return [row[0] for row in rows]

    def agreement(self, model_id: str) -> Agreement:
        """How many logged predictions of ``model_id`` got feedback, and how many of those it agreed with."""
        with self._lock:
            return self._agreement(model_id)

    def _agreement(self, model_id: str) -> Agreement:
        return _agreement(self._db.execute(f"SELECT COUNT(*), SUM(label = top) {_LABELLED}", (model_id,)).fetchone())

    def quality(self, model_id: str, *, bucket_s: float = 3600.0, window: int = 50) -> ModelQuality:
        with self._lock:
            query = self._db.execute
            predictions = query("SELECT COUNT(*) FROM predictions WHERE model_id = ?", (model_id,)).fetchone()[0]
            histogram = [0] * CONFIDENCE_BINS
            for bin_index, number in query(
                "SELECT MIN(CAST(confidence * ? AS INTEGER), ?), COUNT(*) FROM predictions WHERE model_id = ? "
                "GROUP BY 1",
                (CONFIDENCE_BINS, CONFIDENCE_BINS - 1, model_id),
            ):
                histogram[bin_index] = number
            labelled = _LABELLED
            total = self._agreement(model_id)
            per_class = {
                row[0]: _agreement(row[1:])
                for row in query(f"SELECT label, COUNT(*), SUM(label = top) {labelled} GROUP BY label", (model_id,))
            }
            over_time = {
                row[0] * bucket_s: _agreement(row[1:])
                for row in query(
                    f"SELECT CAST(at / ? AS INTEGER), COUNT(*), SUM(label = top) {labelled} GROUP BY 1 ORDER BY 1",
                    (bucket_s, model_id),
                )
            }
            unknown = query(f"SELECT COUNT(*) {labelled} AND known = 0", (model_id,)).fetchone()[0]
            recent = _agreement(
                query(
                    f"SELECT COUNT(*), SUM(agreed) FROM (SELECT label = top AS agreed {labelled} "
                    "ORDER BY feedback_at DESC, id DESC LIMIT ?)",
                    (model_id, window),
                ).fetchone()
            )
        return ModelQuality(model_id, predictions, total, per_class, over_time, histogram, unknown, recent)

    def close(self) -> None:
        with self._lock:
            self._db.close()


_LABELLED = "FROM predictions WHERE model_id = ? AND label IS NOT NULL"


def _agreement(row) -> Agreement:
    return Agreement(feedback=row[0] or 0, agreed=row[1] or 0)


def to_json(quality: ModelQuality) -> dict:
    """`quality` as plain JSON types (for the REST API)."""

    def agreement(value: Agreement) -> dict:
        return {"feedback": value.feedback, "agreed": value.agreed, "rate": value.rate}

    return {
        "model_id": quality.model_id,
        "predictions": quality.predictions,
        "agreement": agreement(quality.agreement),
        "per_class": {label: agreement(value) for label, value in quality.per_class.items()},
        "over_time": {str(start): agreement(value) for start, value in quality.over_time.items()},
        "confidence_histogram": quality.confidence_histogram,
        "unknown_labels": quality.unknown_labels,
        "recent": agreement(quality.recent),
    }

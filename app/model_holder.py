"""The model being served, swapped atomically when the registry publishes a newer one.

A request takes one snapshot with `current()` and uses only that snapshot, so a swap never changes the model
under a request in flight: the request finishes on the old model, which stays alive as long as a request
holds it, and the next request gets the new one. Nothing is unloaded explicitly, so no request can fail
because of a swap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from app.feedback_store import utc_now


class NoModelYet(RuntimeError):
    """No model has been loaded yet (none is published with the serving tag, or it failed to load)."""


@dataclass(frozen=True)
class ServedModel:
    model_id: str
    name: str
    predictor: Any  # classifier.predict.Predictor
    checkpoint: Any  # classifier.checkpoint.Checkpoint
    loaded_at: str = field(default_factory=utc_now)

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.classes)


class ModelHolder:
    def __init__(self, missing_message: str = "No model is being served yet."):
        self._served: ServedModel | None = None
        self._swaps: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._missing_message = missing_message

    def current(self) -> ServedModel | None:
        return self._served  # a single reference read is atomic

    def require(self) -> ServedModel:
        served = self._served
        if served is None:
            raise NoModelYet(self._missing_message)
        return served

    def swap(self, served: ServedModel) -> ServedModel | None:
        """Serve `served` from the next request on; returns the model it replaces."""
        with self._lock:
            previous, self._served = self._served, served
            self._swaps.append((served.model_id, served.loaded_at))
            return previous

    def swaps(self) -> list[tuple[str, str]]:
        """(model id, load time) of every model this process has served, oldest first."""
        with self._lock:
            return list(self._swaps)

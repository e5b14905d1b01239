"""The model the `pets` endpoint answers with: the registry's production model (`loop.registry`'s rule), loaded
before it is used.

A thread looks up the production model every ``CLASSIFIER_SERVING_POLL_SEC`` seconds (1), loads a new one into
`serving.engine.MODELS` and only then makes it current, so a promotion or rollback reaches the endpoint without
any request waiting for a download or a load, and without clearml-serving reloading its configuration (which
holds every request of the process while it does: see `loop.clearml_serving`).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from classifier.predict import Predictor
from loop import registry
from serving import engine, metrics

log = logging.getLogger(__name__)
POLL_ENV = "CLASSIFIER_SERVING_POLL_SEC"


class ProductionFollower:
    def __init__(self, interval: float):
        self.interval = interval
        self._current: tuple[str, Predictor] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def current(self) -> tuple[str, Predictor] | None:
        """``(model id, predictor)`` of production as last seen; None until the first is loaded."""
        return self._current

    def start(self, model_id: str, weights) -> None:
        """Serve ``model_id`` (clearml-serving's copy of the endpoint's model) until the thread finds production,
        and start the thread (once)."""
        with self._lock:
            if self._current is None:
                self._current = (model_id, engine.MODELS.get(model_id, weights))
                metrics.serving_model(model_id, None)
            if self._thread is None:
                self._thread = threading.Thread(target=self._follow, name="pets-production", daemon=True)
                self._thread.start()

    def check_once(self) -> bool:
        """Load and switch to the production model if it changed; True when it did."""
        production = registry.production_model()
        if production is None or (self._current and self._current[0] == production.id):
            return False
        predictor = engine.MODELS.get(production.id, registry.download_model(production.id))
        previous = self._current[0] if self._current else None
        self._current = (production.id, predictor)  # one assignment: a request sees the old pair or the new
        metrics.serving_model(production.id, previous)
        log.info("now serving production model %s", production.id)
        return True

    def _follow(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - the model in use stays; the next round tries again
                log.exception("following the production model failed")


FOLLOWER = ProductionFollower(float(os.environ.get(POLL_ENV, "1") or 1))

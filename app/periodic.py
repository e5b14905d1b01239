"""A background loop for the app's watchers: `tick()` every `interval_s` seconds from `start()` until `stop()`."""

from __future__ import annotations

import threading


class PeriodicWorker:
    """Subclasses implement `tick()`; it must handle its own errors, since a raise would end the loop."""

    thread_name = "periodic-worker"

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

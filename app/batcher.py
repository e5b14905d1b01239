"""Micro-batching: single predictions that arrive together run as one batched forward.

A request hands its decoded image to `MicroBatcher.predict` and waits; one worker thread takes what is queued,
up to `max_batch` images, waiting at most `max_wait_s` for more after the first, and runs them through the
model snapshot each request took (a model swap splits a batch, it never mixes models).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from PIL import Image


@dataclass
class _Job:
    served: object  # app.model_holder.ServedModel
    image: Image.Image
    result: Future = field(default_factory=Future)


class MicroBatcher:
    thread_name = "micro-batcher"

    def __init__(self, max_batch: int, max_wait_s: float, torch_threads: int = 0):
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.torch_threads = torch_threads
        self.batch_sizes: list[int] = []  # of the last 1000 forwards, for tests and the benchmark
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def predict(self, served, image: Image.Image) -> dict[str, float]:
        job = _Job(served, image)
        self._queue.put(job)
        return job.result.result()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                jobs.append(job)
            self._forward(jobs)

    def _forward(self, jobs: list[_Job]) -> None:
        by_model: dict[int, list[_Job]] = {}
        for job in jobs:
            by_model.setdefault(id(job.served), []).append(job)
        for group in by_model.values():
            try:
                rows = group[0].served.predictor.predict_batch([job.image for job in group])
            except Exception as exc:
                for job in group:
                    job.result.set_exception(exc)
                continue
            self.batch_sizes = [*self.batch_sizes[-999:], len(group)]
            for job, row in zip(group, rows, strict=True):
                job.result.set_result(row)

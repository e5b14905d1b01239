"""One thread that runs every forward of a server, batching the images that wait for it.

Request threads decode and `prepare` their images, then `submit` the tensors with the predictor they took (their
model snapshot) and wait on futures. The inference thread takes whatever is queued, up to `max_batch` images,
without ever waiting for more to arrive (so a lone request is not delayed), runs one forward per predictor among
them and resolves the futures.

Why one thread: torch's CPU kernels run on an OpenMP thread team that belongs to the calling OS thread, and an
idle team spins for a while before it sleeps. Forwards from many request threads mean many teams, spinning on the
same cores: on 2 cores a 2-thread forward took 35-46 ms from a server's worker threads against 21 ms from one
thread. Batching the waiting images also makes each image cheaper (batch 4 on 2 cores: 1.4x the images per second
of batch 1).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import torch

log = logging.getLogger(__name__)
DEFAULT_MAX_BATCH = 16


class BatchPredictor(Protocol):
    def forward(self, batch: torch.Tensor) -> list[dict[str, float]]: ...


class InferenceStopped(RuntimeError):
    """The inference thread was closed (or failed) before it ran the forward."""


@dataclass(frozen=True)
class _Job:
    predictor: BatchPredictor
    tensor: torch.Tensor
    future: Future


_STOP = object()


class InferenceThread:
    """Runs the forwards submitted from any thread in one long-lived daemon thread, started on first use.

    `torch_threads`, when given, is set by that thread before its first forward (torch's setting is process-wide);
    None keeps torch's default, one thread per physical core."""

    def __init__(self, max_batch: int = DEFAULT_MAX_BATCH, torch_threads: int | None = None, name: str = "inference"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}.")
        self.max_batch = max_batch
        self.torch_threads = torch_threads
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._batch_sizes: Counter[int] = Counter()

    # -- request threads ---------------------------------------------------------------------------------------

    def submit(self, predictor: BatchPredictor, tensor: torch.Tensor) -> Future:
        """A future for `predictor`'s probabilities of one `prepare`d image (a tensor without batch dimension)."""
        future: Future = Future()
        with self._lock:  # no job can slip in behind the stop marker and wait forever
            if self._stopped:
                raise InferenceStopped("The inference thread is stopped.")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._queue.put(_Job(predictor, tensor, future))
        return future

    def predict(self, predictor: BatchPredictor, tensors: Sequence[torch.Tensor]) -> list[dict[str, float]]:
        """Probabilities for each of `tensors`, submitted together so that they can share forwards."""
        futures = [self.submit(predictor, tensor) for tensor in tensors]
        return [future.result() for future in futures]

    def queued(self) -> int:
        """Images waiting for the inference thread (approximately: others may be adding or taking some)."""
        return self._queue.qsize()

    def batch_sizes(self) -> Counter[int]:
        """How many forwards ran with each batch size so far."""
        with self._lock:
            return Counter(self._batch_sizes)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the thread after the forwards already queued; later submits raise `InferenceStopped`."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    # -- the inference thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        jobs: list[_Job] = []
        try:
            if self.torch_threads:
                torch.set_num_threads(self.torch_threads)
            while (jobs := self._take()) is not None:
                self._forward(jobs)
        except BaseException as exc:  # no caller may wait forever, whatever stopped the thread
            log.exception("The inference thread failed")
            with self._lock:
                self._stopped = True
            failure = InferenceStopped(f"The inference thread failed: {exc!r}")
            for job in jobs or []:
                if not job.future.done():
                    job.future.set_exception(failure)
            self._fail_queued(failure)
            return
        self._fail_queued(InferenceStopped("The inference thread is stopped."))

    def _take(self) -> list[_Job] | None:
        """The next jobs: blocks for the first, then takes only what is already queued. None: stop."""
        first = self._queue.get()
        if first is _STOP:
            return None
        jobs = [first]
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)  # honoured after this batch
                break
            jobs.append(job)
        return jobs

    def _forward(self, jobs: list[_Job]) -> None:
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(id(job.predictor), []).append(job)
        for group in groups.values():
            futures = [job.future for job in group if job.future.set_running_or_notify_cancel()]
            try:
                rows = group[0].predictor.forward(torch.stack([job.tensor for job in group]))
            except Exception as exc:  # reaches the callers of this forward only
                for future in futures:
                    future.set_exception(exc)
                continue
            finally:
                with self._lock:
                    self._batch_sizes[len(group)] += 1
            for job, row in zip(group, rows, strict=True):
                if not job.future.done():
                    job.future.set_result(row)

    def _fail_queued(self, exc: Exception) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(exc)

"""One thread that runs every forward of a server, batching the images that wait for it.

Request threads decode and `prepare` their images, then `submit` the tensors with the predictor they took (their
model snapshot) and wait on futures. The inference thread takes whatever is queued, up to `max_batch` images,
without ever waiting for more to arrive (so a lone request is not delayed), runs one forward per predictor among
them and resolves the futures.

Why one thread: torch's CPU kernels run on an OpenMP (libgomp) thread team that belongs to the calling OS thread.
libgomp spin-waits between the parallel regions of a team only while the threads it manages, across all teams, are
no more than the cores; past that its waits become sleeps and wake-ups. On 2 cores a 2-thread forward took 15 ms on
a process's only team and 27 ms in a thread whose process had a second team (made by the thread that loaded the
model), with some 600 context switches per forward. So a server runs its forwards in one thread, and its other
threads' torch work on one thread each (see `start`). Batching the waiting images makes each image cheaper too: 8
threads decoding and submitting JPEGs on 2 cores got 77 images/s through batches against 39 one by one.
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
    """Runs the forwards submitted from any thread in one long-lived daemon thread, started by `start` or on first
    use. `torch_threads`: the threads of its forwards (None: torch's default for a new thread)."""

    def __init__(self, max_batch: int = DEFAULT_MAX_BATCH, torch_threads: int | None = None, name: str = "inference"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}.")
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1, got {torch_threads}.")
        self.max_batch = max_batch
        self.torch_threads = torch_threads
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._batch_sizes: Counter[int] = Counter()
        self._waiting = 0  # images queued
        self._held: list[_Job] | object | None = None  # taken from the queue, first of the next batch

    def start(self) -> None:
        """Start the thread now. Its forwards use `torch_threads`; every other thread keeps its torch threads, and
        so does torch's default for threads that have not run a torch op yet (call `torch.set_num_threads(1)` first
        to keep them to one, so that no other thread makes an OpenMP team of its own)."""
        with self._lock:
            if self._thread is None and not self._stopped:
                self._start()

    def _start(self) -> None:
        ready = threading.Event()
        default = torch.get_num_threads() if self.torch_threads else None
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        if self.torch_threads:
            # torch.set_num_threads sets the calling thread's threads and the default that a thread takes at its
            # first torch op: the inference thread has set and taken its own, the default goes back.
            torch.set_num_threads(default)

    # -- request threads ---------------------------------------------------------------------------------------

    def submit(self, predictor: BatchPredictor, tensor: torch.Tensor) -> Future:
        """A future for `predictor`'s probabilities of one `prepare`d image (a tensor without batch dimension)."""
        return self.submit_many(predictor, [tensor])[0]

    def submit_many(self, predictor: BatchPredictor, tensors: Sequence[torch.Tensor]) -> list[Future]:
        """Futures for the images of one request, queued together (in chunks of `max_batch`), so that the inference
        thread never starts a forward with only the first of them."""
        jobs = [_Job(predictor, tensor, Future()) for tensor in tensors]
        with self._lock:  # no job can slip in behind the stop marker and wait forever
            if self._stopped:
                raise InferenceStopped("The inference thread is stopped.")
            if self._thread is None:
                self._start()
            for start in range(0, len(jobs), self.max_batch):
                self._queue.put(jobs[start : start + self.max_batch])
            self._waiting += len(jobs)
        return [job.future for job in jobs]

    def predict(self, predictor: BatchPredictor, tensors: Sequence[torch.Tensor]) -> list[dict[str, float]]:
        """Probabilities for each of `tensors` (one request's images, sharing forwards)."""
        return [future.result() for future in self.submit_many(predictor, tensors)]

    def queued(self) -> int:
        """Images waiting for the inference thread."""
        with self._lock:
            return self._waiting

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

    def _run(self, ready: threading.Event) -> None:
        jobs: list[_Job] = []
        try:
            try:
                if self.torch_threads:
                    torch.set_num_threads(self.torch_threads)
                    torch.get_num_threads()  # this thread's first torch call: it takes its threads now, not later
            finally:
                ready.set()
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
        """The next jobs: blocks for the first request, then adds only requests already queued, as long as their
        images fit in `max_batch` (one that does not is the first of the next batch). None: stop."""
        first = self._held if self._held is not None else self._queue.get()
        self._held = None
        if first is _STOP:
            return None
        jobs = list(first)
        while True:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is _STOP or len(jobs) + len(more) > self.max_batch:
                self._held = more  # the stop marker is honoured after this batch
                break
            jobs.extend(more)
        with self._lock:
            self._waiting -= len(jobs)
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
            if self._held is not None:
                jobs, self._held = self._held, None
            else:
                try:
                    jobs = self._queue.get_nowait()
                except queue.Empty:
                    return
            for job in [] if jobs is _STOP else jobs:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(exc)

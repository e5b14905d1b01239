"""The threads that run every forward of a server, batching the images that wait for them.

Request threads decode and `prepare` their images, then `submit` the tensors with the predictor they took (their
model snapshot) and wait on futures. The workers take what is queued, never waiting for more to arrive (so a lone
request is not delayed), and run one forward per predictor among the images they took:

- a lone image, while no forward runs, goes to the *wide* worker, whose forwards use all the cores
  (`torch_threads`): the lowest latency for one image;
- when several images wait, *single-thread* workers (`single_thread_workers`, typically one per core) share them,
  each taking its share (what waits divided by the number of these workers, at most `max_batch`), each forward
  on one thread: the most images per second. A small model scales poorly across cores within one forward: on 2
  cores, EfficientNet-Lite0 at 224 px ran 90 images/s in batches of 2 on 2 threads, 102 in two one-thread workers
  (batches of 4: 74 and 93).

The wide worker never runs beside another forward, so the cores are never oversubscribed by forwards.

Why so few OpenMP threads: torch's CPU kernels run on an OpenMP (libgomp) thread team that belongs to the calling OS
thread. libgomp spin-waits between the parallel regions of a team only while the threads it manages, across all
teams, are no more than the cores; past that its waits become sleeps and wake-ups. On 2 cores a 2-thread forward
took 15 ms on a process's only team and 27 ms in a thread whose process had a second team (made by the thread that
loaded the model), with some 600 context switches per forward. So only the wide worker has a team; the single-thread
workers make none (torch runs a one-thread forward without OpenMP), and a server keeps its other threads' torch work
to one thread each (see `start`). Preemption hurts a team too: a forward whose second thread is descheduled by a
decoding request thread spins at its next barrier; one-thread forwards have no barrier.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, deque
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
    """The workers were closed (or one failed) before the forward ran."""


@dataclass(frozen=True)
class _Job:
    predictor: BatchPredictor
    tensor: torch.Tensor
    future: Future


class InferenceWorkers:
    """Runs the forwards submitted from any thread in long-lived daemon threads, started by `start` or on first use.

    `torch_threads`: the threads of the wide worker's forwards (None: torch's default for a new thread).
    `single_thread_workers`: how many one-thread workers share the images when several wait (0: the wide worker
    takes them all, `max_batch` at a time, as a GPU server wants)."""

    def __init__(
        self,
        max_batch: int = DEFAULT_MAX_BATCH,
        torch_threads: int | None = None,
        single_thread_workers: int = 0,
        name: str = "inference",
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}.")
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1, got {torch_threads}.")
        if single_thread_workers < 0:
            raise ValueError(f"single_thread_workers must be at least 0, got {single_thread_workers}.")
        self.max_batch = max_batch
        self.torch_threads = torch_threads
        self.single_thread_workers = single_thread_workers
        self.name = name
        self._condition = threading.Condition()  # guards everything below
        self._pending: deque[_Job] = deque()
        self._threads: list[threading.Thread] = []
        self._wide_running = False
        self._narrow_running = 0  # forwards of the single-thread workers in progress
        self._stopped = False
        self._batch_sizes: Counter[int] = Counter()

    def start(self) -> None:
        """Start the workers now. The wide worker's forwards use `torch_threads`, the others one; every other thread
        keeps its torch threads, and so does torch's default for threads that have not run a torch op yet (call
        `torch.set_num_threads(1)` first to keep them to one, so that no other thread makes an OpenMP team)."""
        with self._condition:
            if not self._threads and not self._stopped:
                self._start()

    def _start(self) -> None:
        default = torch.get_num_threads()
        workers = [(f"{self.name}-wide", True, self.torch_threads)]
        workers += [(f"{self.name}-{index}", False, 1) for index in range(self.single_thread_workers)]
        for name, wide, threads in workers:
            ready = threading.Event()
            thread = threading.Thread(target=self._run, args=(wide, threads, ready), name=name, daemon=True)
            thread.start()
            ready.wait()
            self._threads.append(thread)
        # torch.set_num_threads sets the calling thread's threads and the default that a thread takes at its first
        # torch op: each worker has set and taken its own, the default goes back.
        torch.set_num_threads(default)

    # -- request threads ---------------------------------------------------------------------------------------

    def submit(self, predictor: BatchPredictor, tensor: torch.Tensor) -> Future:
        """A future for `predictor`'s probabilities of one `prepare`d image (a tensor without batch dimension)."""
        return self.submit_many(predictor, [tensor])[0]

    def submit_many(self, predictor: BatchPredictor, tensors: Sequence[torch.Tensor]) -> list[Future]:
        """Futures for the images of one request, queued together, so that no worker starts a forward with only the
        first of them."""
        jobs = [_Job(predictor, tensor, Future()) for tensor in tensors]
        with self._condition:  # no job can be queued after the workers stopped taking them
            if self._stopped:
                raise InferenceStopped("The inference workers are stopped.")
            if not self._threads:
                self._start()
            self._pending.extend(jobs)
            self._condition.notify_all()
        return [job.future for job in jobs]

    def predict(self, predictor: BatchPredictor, tensors: Sequence[torch.Tensor]) -> list[dict[str, float]]:
        """Probabilities for each of `tensors` (one request's images, sharing forwards)."""
        return [future.result() for future in self.submit_many(predictor, tensors)]

    def queued(self) -> int:
        """Images waiting for a worker."""
        with self._condition:
            return len(self._pending)

    def batch_sizes(self) -> Counter[int]:
        """How many forwards ran with each batch size so far."""
        with self._condition:
            return Counter(self._batch_sizes)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the workers after the forwards already queued; later submits raise `InferenceStopped`."""
        with self._condition:
            if self._stopped:
                return
            self._stopped = True
            threads = list(self._threads)
            self._condition.notify_all()
        for thread in threads:
            thread.join(timeout)

    # -- the workers -------------------------------------------------------------------------------------------

    def _run(self, wide: bool, threads: int | None, ready: threading.Event) -> None:
        jobs: list[_Job] = []
        try:
            try:
                if threads:
                    torch.set_num_threads(threads)
                torch.get_num_threads()  # this thread's first torch call: it takes its threads now, not later
            finally:
                ready.set()
            while (jobs := self._take(wide)) is not None:
                try:
                    self._forward(jobs)
                finally:
                    with self._condition:
                        if wide:
                            self._wide_running = False
                        else:
                            self._narrow_running -= 1
                        self._condition.notify_all()
        except BaseException as exc:  # no caller may wait forever, whatever stopped a worker
            log.exception("An inference worker failed")
            failure = InferenceStopped(f"The inference workers failed: {exc!r}")
            with self._condition:
                self._stopped = True
                queued = list(self._pending)
                self._pending.clear()
                self._condition.notify_all()
            for job in jobs or []:
                if not job.future.done():
                    job.future.set_exception(failure)
            for job in queued:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(failure)

    def _take(self, wide: bool) -> list[_Job] | None:
        """The next jobs of a worker; blocks until it may take some. None: stopped and nothing is left."""
        with self._condition:
            while True:
                count = self._share(wide)
                if count:
                    if wide:
                        self._wide_running = True
                    else:
                        self._narrow_running += 1
                    return [self._pending.popleft() for _ in range(count)]
                if self._stopped and not self._pending:
                    return None
                self._condition.wait()

    def _share(self, wide: bool) -> int:
        """How many of the waiting images the worker may take now (0: none; it waits)."""
        waiting = len(self._pending)
        if not waiting or self._wide_running:
            return 0
        if wide:
            if self._narrow_running or (waiting > 1 and self.single_thread_workers):
                return 0
            return min(waiting, self.max_batch)
        if waiting == 1 and not self._narrow_running:
            return 0  # a lone image while nothing runs: the wide worker's
        # Its share of what waits, as if every worker were taking some: the rest is left for the workers that come
        # free next, so that all keep busy with small batches (2 cores, 8 clients: 72 images/s against 67 for
        # taking all that waits, whose turns alternated between one big batch and lone images).
        return min(math.ceil(waiting / self.single_thread_workers), self.max_batch)

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
                with self._condition:
                    self._batch_sizes[len(group)] += 1
            for job, row in zip(group, rows, strict=True):
                if not job.future.done():
                    job.future.set_result(row)

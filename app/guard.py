"""Bounds that keep one client, or many hostile ones, from exhausting the app: a memory budget shared by the
decodes in flight, a per-client rate limit on feedback, and limits on how many new classes feedback may create.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class Refused(RuntimeError):
    """A request refused by a bound; the message says which one. `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 429):
        super().__init__(message)
        self.status = status


def client_id(username: str | None, address: str | None) -> str:
    """Who a request comes from, for the per-client limits: the signed-in user, else the client's address."""
    return f"user:{username}" if username else f"address:{address or 'unknown'}"


@dataclass(frozen=True)
class Access:
    """Who may publish feedback by hand and work through the review queue: the signed-in user when a login is
    configured. Without a login the app listens on this machine only (or the operator said `--insecure`), so
    whoever reaches it may."""

    login: tuple[str, str] | None

    def check_manager(self, username: str | None) -> None:
        if self.login is not None and username is None:
            raise Refused("Sign in first: publishing and the review queue need a signed-in user.", status=403)


def return_freed_memory() -> None:
    """Give the memory that threads have freed back to the system (glibc's malloc_trim; elsewhere nothing).

    glibc keeps what a thread frees in that thread's malloc arena for its next allocations, so each request thread
    would hold on to the memory of the largest image it decoded: four hostile uploads took the app to +762 MiB for a
    512 MiB decode budget. A fixed 4 MiB mmap threshold (every large block mapped, and unmapped when freed) did the
    same job, but also for a batched forward's activations, whose pages were then faulted in again at every
    forward: batches of 4 ran 3x slower."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


class MemoryBudget:
    """A semaphore on bytes: a decode reserves its estimated memory and waits (up to `wait_s`) while others
    hold the rest, so the decodes in flight never hold more than `limit_bytes` between them. A reservation of
    `trim_bytes` or more returns the memory freed under it to the system before it ends (trimming takes about a
    millisecond, nothing next to such a decode)."""

    def __init__(self, limit_bytes: int, wait_s: float = 30.0, trim_bytes: int = 32 << 20):
        self.limit_bytes = limit_bytes
        self.wait_s = wait_s
        self.trim_bytes = trim_bytes
        self._used = 0
        self._peak = 0
        self._condition = threading.Condition()

    @property
    def peak_bytes(self) -> int:
        """The most bytes reserved at once so far."""
        return self._peak

    @contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        if size > self.limit_bytes:
            raise Refused(
                f"Decoding this image would take about {size / 2**20:.0f} MiB; the limit is "
                f"{self.limit_bytes / 2**20:.0f} MiB. Send a smaller image.",
                status=413,
            )
        with self._condition:
            if not self._condition.wait_for(lambda: self._used + size <= self.limit_bytes, timeout=self.wait_s):
                raise Refused("The server is busy decoding other images; try again in a moment.", status=503)
            self._used += size
            self._peak = max(self._peak, self._used)
        try:
            yield
        finally:
            if size >= self.trim_bytes:
                return_freed_memory()  # before the next decode may start: it finds the memory free in the system
            with self._condition:
                self._used -= size
                self._condition.notify_all()


class RateLimiter:
    """At most `limit` events per client in any `window_s` seconds (a sliding window); `limit` 0 is no limit."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Count one event for `client`, or raise `Refused` when it is over its limit."""
        if self.limit <= 0:
            return
        now = self._clock()
        with self._lock:
            events = self._events.setdefault(client, deque())
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                wait = events[0] + self.window_s - now
                raise Refused(
                    f"Too much feedback: at most {self.limit} per {self.window_s:g} s from one client; "
                    f"try again in {wait:.0f} s."
                )
            events.append(now)
            if len(self._events) > 10_000:  # forget idle clients, so the table stays bounded
                for key in [
                    key for key, queue in self._events.items() if not queue or queue[-1] <= now - self.window_s
                ]:
                    del self._events[key]


class LabelPolicy:
    """Which new labels (classes the served model does not know) feedback may introduce.

    `allowed`: when given, only these labels are accepted at all (allow-list mode). Otherwise a new label is
    accepted while fewer than `max_pending` new labels are pending overall and fewer than `max_per_client`
    of them were introduced by this client. 0 means no new labels at all."""

    def __init__(self, max_pending: int = 10, max_per_client: int = 3, allowed: frozenset[str] | None = None):
        self.max_pending = max_pending
        self.max_per_client = max_per_client
        self.allowed = allowed

    def check(self, label: str, known: set[str], pending_new: dict[str, set[str]], client: str) -> None:
        """Raise `Refused` unless `label` may be stored. `pending_new` maps each new label already pending to
        the clients that introduced it."""
        if self.allowed is not None:
            if label not in self.allowed:
                allowed = ", ".join(sorted(self.allowed))
                raise Refused(f"The label {label!r} is not one of the allowed labels: {allowed}.", status=422)
            return
        if label in known or label in pending_new:
            return
        if len(pending_new) >= self.max_pending:
            raise Refused(
                f"{len(pending_new)} new labels are already waiting for the next training run (the limit is "
                f"{self.max_pending}); pick an existing class."
            )
        mine = sum(1 for clients in pending_new.values() if client in clients)
        if mine >= self.max_per_client:
            raise Refused(
                f"You have added {mine} new labels that are still waiting for the next training run (the limit "
                f"is {self.max_per_client}); pick an existing class."
            )

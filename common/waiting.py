"""The one wait-until of the project: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 1.0) -> T:
    """Poll `condition` until it returns something truthy and return that; TimeoutError naming `what` after
    `timeout` seconds. `condition` may raise to stop waiting early (e.g. when the process it waits for died).
    It is called once more at the deadline, so a condition that holds just then is not reported as a timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))

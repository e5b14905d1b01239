"""The one exception the loop's library code raises for a failure the user can act on."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

Main = TypeVar("Main", bound=Callable[..., object])


class StageError(Exception):
    """Bad input or missing data (an unknown dataset, a model without weights, a missing parameter).

    Library code raises it and never exits the process: the app's worker threads catch it like any error.
    Only entry points turn it into a message and an exit code (`exit_on_error`).
    """


EXIT_CODE = 1


def exit_on_error(main: Main) -> Main:
    """Decorate an entry point's `main`: a StageError ends the process with its message and exit code 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except StageError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]

"""Work counted as the Python and C function calls it makes (`sys.setprofile`): a count that
is the same on every run of the same code, unlike a clock on a shared runner."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def calls_made(work: Callable[[], T]) -> tuple[int, T]:
    """How many function calls `work()` makes, and what it returns."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        result = work()
    finally:
        sys.setprofile(None)
    return calls, result

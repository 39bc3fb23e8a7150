"""Deadline-based polling: the only way tests wait for something to happen."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Call `predicate` every `interval` seconds until it returns a truthy value; return that value.

    The predicate is always called at least once, and once more at (or just after) the deadline.
    On timeout raise AssertionError(message + the last value the predicate returned).
    Exceptions raised by the predicate propagate immediately (a broken probe is a bug, not "not yet").
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    prefix = f"{message}: " if message else ""
    raise AssertionError(f"{prefix}timed out after {timeout:g}s; last value: {value!r}")

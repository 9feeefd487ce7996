"""Wait on a condition with a deadline: the one way tests wait (no fixed sleeps).

Owns: :func:`wait_until` and :func:`async_wait_until`. May import: the standard library.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    """Poll ``predicate`` until it is truthy; AssertionError with ``message`` at the deadline.

    The predicate is evaluated once more after the deadline so a slow last poll still counts.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            if predicate():
                return
            raise AssertionError(f"{message} (waited {timeout:g} s)")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    """As :func:`wait_until`, for an async predicate inside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() >= deadline:
            if await predicate():
                return
            raise AssertionError(f"{message} (waited {timeout:g} s)")
        await asyncio.sleep(interval)

"""Debounced change hints from a watcher.

Owns: coalescing bursts of watch events into one batch, and when each hinted change happened
(``times``, read by the latency measurement: ``engine.latency``). May import: the standard
library, ``podsync.limits``, ``podsync.core.paths``, ``podsync.engine.latency``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from podsync.core.paths import ROOT, RelPath
from podsync.engine.latency import EventTimes
from podsync.limits import DEBOUNCE_MAX_SECONDS, DEBOUNCE_SECONDS

#: More distinct hinted paths than this waiting at once become one "rescan everything" hint
#: (memory stays bounded whatever a watcher, or a hostile agent, sends).
MAX_PENDING_PATHS = 10_000


class HintBuffer:
    """Collects hinted paths; ``take()`` returns them once a burst is over.

    A burst is over when no new hint arrived for ``quiet`` seconds, or ``limit`` seconds after
    it began (a constant stream of events must not postpone sync forever).
    """

    def __init__(self, quiet: float = DEBOUNCE_SECONDS, limit: float = DEBOUNCE_MAX_SECONDS):
        self._paths: set[RelPath] = set()
        self._event = asyncio.Event()
        self._quiet = quiet
        self._limit = limit
        self._failure: BaseException | None = None
        self._last = 0.0
        #: When the change behind each hinted path happened (local wall clock).
        self.times = EventTimes()

    def add(self, paths: Iterable[RelPath], at: float | None = None) -> None:
        """Hint ``paths``; ``at`` is when their change happened (local wall clock; default:
        now, the hint's arrival)."""
        paths = list(paths)
        self.times.note(paths, time.time() if at is None else at)
        self._paths.update(paths)
        if len(self._paths) > MAX_PENDING_PATHS:
            self._paths = {ROOT}
        self._last = time.monotonic()
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        self._failure = exc
        self._event.set()

    async def take(self) -> list[RelPath]:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._paths:
                break
            self._event.clear()
            await self._event.wait()
        began = time.monotonic()
        while True:
            now = time.monotonic()
            wait = min(self._last + self._quiet - now, began + self._limit - now)
            if wait <= 0 or self._failure is not None:
                break
            await asyncio.sleep(wait)
        paths, self._paths = self._paths, set()
        self.times.take()
        self._event.clear()
        return sorted(paths)

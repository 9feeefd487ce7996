"""bandwidthLimits: a token bucket per sync and direction.

Owns: pacing of bytes. May import: the standard library.

The bucket holds at most ``burst`` bytes (a quarter second of the rate, at least one chunk), so
over any window of a few seconds the average stays within a few percent of the limit.
"""

from __future__ import annotations

import asyncio
import time


class Throttle:
    """``await take(n)`` before sending ``n`` bytes. ``rate`` None = unlimited (no-op)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._burst = max(rate // 4, 16 * 1024) if rate else 0
        self._tokens = float(self._burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    @property
    def limited(self) -> bool:
        return self.rate is not None

    def chunk_size(self, default: int) -> int:
        """Chunk size that keeps pacing smooth: at most an eighth of a second of the rate."""
        if self.rate is None:
            return default
        return max(4096, min(default, self.rate // 8))

    async def take(self, n: int) -> None:
        if self.rate is None or n <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                # Sleep until the debt is paid; tokens stay negative until then.
                delay = -self._tokens / self.rate
                await asyncio.sleep(delay)
                self._stamp = time.monotonic()
                self._tokens = 0.0

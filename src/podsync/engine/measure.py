"""The latency figures of a running sync: the endpoints' clocks -> ``engine.latency`` -> status.

Owns: :class:`MeasuredWatch`, the part of :class:`~podsync.engine.session.Session` that turns
what each watch-phase batch wrote into latency samples and shows them in the status file.
May import: ``podsync.engine`` (latency, watch, report, executor); the arithmetic is in
``engine.latency`` (pure), the time stamps come from the endpoints:

- ``event_times`` (an :class:`~podsync.engine.latency.EventTimes`): when the change behind
  each hinted path happened, on the local clock (the local watcher's event; the Python
  agent's stamp converted with its ping offset; else the hint's arrival);
- ``applied_at``: when each write was committed locally / acknowledged by the agent (a far
  side without it, the shell agent, counts the end of the batch's execution).

An endpoint without them is simply not measured. Only the watch phase counts (the initial
sync and a resume measure a scan, not a save), and the hints a batch took are forgotten once
that batch is done (``EventTimes.retire``), so a later write never inherits an old event.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from podsync.engine.latency import EventTimes, LatencyMeter
from podsync.engine.watch import WatchPhase

if TYPE_CHECKING:
    from podsync.engine.executor import Outcome
    from podsync.engine.report import StatusBoard

#: The status file gets the new figures at most this long after a batch (its writes are
#: rate-limited; this flushes the last one of a burst).
FLUSH_AFTER_SECONDS = 0.3


def _times(endpoint: Any) -> EventTimes | None:
    times = getattr(endpoint, "event_times", None)
    return times if isinstance(times, EventTimes) else None


def _applied(endpoint: Any) -> dict[str, float]:
    applied = getattr(endpoint, "applied_at", None)
    return applied if isinstance(applied, dict) else {}


class MeasuredWatch(WatchPhase):
    """Latency samples around the watch phase's batches (mixed into Session)."""

    board: StatusBoard
    _latency: LatencyMeter | None = None
    _measuring = False
    _flush_due: asyncio.TimerHandle | None = None

    @property
    def latency(self) -> LatencyMeter:
        if self._latency is None:
            self._latency = LatencyMeter()
        return self._latency

    async def _sync_paths(self, local: Any, remote: Any, *args: Any, **kwargs: Any) -> None:
        marks = [(t, t.takes) for t in (_times(local), _times(remote)) if t is not None]
        self._measuring = True
        try:
            await super()._sync_paths(local, remote, *args, **kwargs)
        finally:
            self._measuring = False
            for times, mark in marks:
                times.retire(mark)

    def _measure(self, out: Outcome, phase: str, local: Any, remote: Any) -> None:
        """Samples for what ``out`` wrote (watch phase only); the endpoints' acknowledgement
        times are cleared in every phase, so they never grow."""
        now = time.time()
        local_applied, remote_applied = _applied(local), _applied(remote)
        added = 0
        if phase == "sync" and self._measuring:
            meter = self.latency
            added += meter.record(meter.up, out.uploaded, _times(local), remote_applied, now)
            added += meter.record(meter.down, out.downloaded, _times(remote), local_applied, now)
        local_applied.clear()
        remote_applied.clear()
        if added:
            self._show_latency(remote)

    def _show_latency(self, remote: Any) -> None:
        clock = getattr(remote, "clock", None)
        stamped = getattr(remote, "hint_stamps", False) and clock is not None and clock.known
        figures = self.latency.to_json("agent_event" if stamped else "hint_arrival", clock)
        name = self.spec.name
        self.board.update(name, latency=figures)
        if self._flush_due is None or self._flush_due.cancelled():
            self._flush_due = asyncio.get_running_loop().call_later(
                FLUSH_AFTER_SECONDS, self._flush_latency
            )

    def _flush_latency(self) -> None:
        self._flush_due = None
        self.board.flush_if_dirty()

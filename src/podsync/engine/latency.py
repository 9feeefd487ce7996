"""Save -> applied latency, as the engine measures it: pure bookkeeping, no clock of its own.

Owns: :class:`Window` (the last WINDOW samples of one direction, in a ring buffer, with
:func:`percentile` and :class:`Summary`), :class:`ClockOffset` (the far side's clock relative
to ours, from ping round trips) and :class:`EventTimes` (when the change behind each hinted
path happened, until the batch that handles it is done). May import: the standard library
only, and no I/O: every time is passed in by the caller (seconds of the local wall clock,
``time.time()``), so all of it is tested as data.

What is measured, per sync and direction, over the last WINDOW changes written:

- **up**: from the local event (the moment the local inotify watcher read it) to the
  agent's acknowledgement of the applied write (the moment its ``done``/``result`` frame
  naming the path arrived). Both ends are on the local clock: no offset is involved. With
  the shell agent the acknowledgement is the end of the batch's write command.
- **down**: from the far side's event to the moment the local write was committed. The
  Python agent stamps each ``hints`` frame with the time (its own clock) at which its
  watcher read the first event of the burst; the engine converts it to the local clock with
  the offset below. An agent that sends no stamp (the shell agent, which polls; an older
  agent) is measured from the moment its hint (the poll listing) arrived, which leaves out
  the time until the poll saw the change (up to one poll interval).

Clock offset (down only): the engine numbers its pings; the agent answers each at once, from
its reader thread, with its wall clock ``at``. With ``t_send``/``t_recv`` the local send and
receive times, ``offset = at - (t_send + t_recv) / 2``: the agent's clock minus ours,
assuming the answer was taken half-way through the round trip. The error of that assumption
is at most ``rtt / 2``, so the estimate of the smallest round trip seen is kept (a ping that
waited behind a large write has a long round trip and loses). Two clocks drift apart, so an
estimate's round trip counts as growing by CLOCK_DRIFT per second of its age (100 ppm, 0.1 ms
per second: the 1 ms estimate of an hour ago counts as 361 ms, and a fresh 5 ms ping wins).
An agent event stamped ``at`` happened at ``at - offset`` on our clock; it is never taken as
later than the hint's arrival, and a negative sample (clock error) counts as 0.

Only writes count (files, directories, links): deletions are held on purpose for a moment
(the mass-deletion check) and would measure that hold, not the transport.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Samples kept per direction (the figures describe the last WINDOW changes).
WINDOW = 1000
#: Hinted paths remembered per side; beyond, one entry for the root keeps the earliest time.
MAX_EVENT_PATHS = 10_000
#: Ping answers wanted right after connecting (each sent when the previous one came back).
CLOCK_ROUNDS = 4
#: How fast an offset estimate ages: seconds of round trip added per second of age.
CLOCK_DRIFT = 1e-4


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``ordered`` (ascending, not empty): the smallest
    sample such that at least ``fraction`` of all samples are less than or equal to it.
    Always one of the samples (no interpolation): p50 of [1, 2] is 1, p95 of 20 samples is
    the 19th, p100 the maximum."""
    if not ordered:
        raise ValueError("percentile of no samples")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is outside (0, 1]")
    rank = math.ceil(fraction * len(ordered) - 1e-9)
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class Summary:
    """One direction's figures: ``count`` samples (at most WINDOW, the latest), their median,
    95th percentile and maximum in milliseconds (None when there is no sample yet), and how
    many changes were measured in all since the sync started."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    total: int

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "max_ms": self.max_ms,
            "total": self.total,
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


class Window:
    """The last ``size`` latency samples (seconds) of one direction, in a ring buffer."""

    def __init__(self, size: int = WINDOW) -> None:
        if size < 1:
            raise ValueError("a window holds at least one sample")
        self.size = size
        self._samples: list[float] = []
        self._next = 0
        self.total = 0

    def add(self, seconds: float) -> None:
        """Record one change's latency; a negative one (clock error) counts as 0, and
        something that is not a finite number is ignored."""
        if not math.isfinite(seconds):
            return
        value = max(0.0, seconds)
        if len(self._samples) < self.size:
            self._samples.append(value)
        else:
            self._samples[self._next] = value
        self._next = (self._next + 1) % self.size
        self.total += 1

    def __len__(self) -> int:
        return len(self._samples)

    def samples(self) -> list[float]:
        """The samples held, oldest first."""
        if len(self._samples) < self.size:
            return list(self._samples)
        return self._samples[self._next :] + self._samples[: self._next]

    def summary(self) -> Summary:
        if not self._samples:
            return Summary(0, None, None, None, self.total)
        ordered = sorted(self._samples)
        return Summary(
            len(ordered),
            _ms(percentile(ordered, 0.50)),
            _ms(percentile(ordered, 0.95)),
            _ms(ordered[-1]),
            self.total,
        )


class ClockOffset:
    """The far side's clock minus ours, from ping round trips (see the module docstring)."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.rtt: float | None = None
        self.samples = 0
        self._taken = 0.0  # when the kept estimate was measured (its ping's midpoint)

    def observe(self, sent: float, far_time: float, received: float) -> None:
        """One ping: sent at ``sent``, answered with the far clock at ``far_time``, answer
        received at ``received`` (local clock). A round trip that runs backwards (the local
        clock stepped) is ignored."""
        rtt = received - sent
        if rtt < 0 or not (math.isfinite(rtt) and math.isfinite(far_time)):
            return
        self.samples += 1
        middle = (sent + received) / 2.0
        if self.rtt is None or rtt <= self.rtt + max(0.0, middle - self._taken) * CLOCK_DRIFT:
            self.rtt = rtt
            self.offset = far_time - middle
            self._taken = middle

    @property
    def known(self) -> bool:
        return self.offset is not None

    def to_local(self, far_time: float, arrived: float) -> float:
        """A far-side time on the local clock; never later than ``arrived`` (the event was
        before its hint arrived), and ``arrived`` itself while no offset is known."""
        if self.offset is None:
            return arrived
        return min(far_time - self.offset, arrived)

    def to_json(self) -> dict[str, Any]:
        return {
            "offset_ms": None if self.offset is None else _ms(self.offset),
            "rtt_ms": None if self.rtt is None else _ms(self.rtt),
            "pings": self.samples,
        }


class PingClock(ClockOffset):
    """A :class:`ClockOffset` fed by numbered pings: ``ping`` gives the next ping's header and
    remembers when it went; ``answer`` takes the echo (the last ``kept`` pings are awaited;
    an answer to another number is ignored) and says whether to send the next ping at once
    (while fewer than CLOCK_ROUNDS answers came: right after connecting)."""

    def __init__(self, kept: int = 16) -> None:
        super().__init__()
        self.kept = kept
        self._number = 0
        self._sent: dict[int, float] = {}

    def ping(self, now: float) -> dict[str, Any]:
        self._number += 1
        self._sent[self._number] = now
        for old in [n for n in self._sent if n <= self._number - self.kept]:
            del self._sent[old]
        return {"t": "ping", "n": self._number}

    def answer(self, number: int, far_time: float | None, received: float) -> bool:
        sent = self._sent.pop(number, None)
        if sent is None or far_time is None:
            return False
        self.observe(sent, far_time, received)
        return self.samples < CLOCK_ROUNDS


def _covering(path: str) -> Iterable[str]:
    """``path``, its parents, and the root ``""`` (hint paths name what may have changed,
    and a hinted directory stands for everything below it)."""
    while path:
        yield path
        cut = path.rfind("/")
        path = path[:cut] if cut >= 0 else ""
    yield ""


class EventTimes:
    """When the change behind each hinted path happened, from the hint to the end of the
    batch that handles it.

    ``note`` records events as hints arrive (the earliest time per path: the user saved
    then); ``take`` moves them to the hints handed to the engine (a path taken again gets its
    new time); ``when`` answers for a written path with the latest take covering it (its own
    entry or a hinted parent; among entries of the same take, the nearest); ``retire`` drops
    what the takes up to a mark held, once their batch is done. Memory stays bounded: past
    ``limit`` paths, one root entry keeps the earliest time.
    """

    def __init__(self, limit: int = MAX_EVENT_PATHS) -> None:
        self.limit = limit
        self.takes = 0
        self._pending: dict[str, float] = {}
        self._taken: dict[str, tuple[int, float]] = {}

    def note(self, paths: Iterable[str], at: float) -> None:
        pending = self._pending
        for path in paths:
            known = pending.get(path)
            if known is None or at < known:
                pending[path] = at
        if len(pending) > self.limit:
            self._pending = {"": min(pending.values())}

    def take(self) -> None:
        self.takes += 1
        for path, at in self._pending.items():
            self._taken[path] = (self.takes, at)
        self._pending = {}
        if len(self._taken) > self.limit:
            self._taken = {"": (self.takes, min(at for _, at in self._taken.values()))}

    def when(self, path: str) -> float | None:
        """When the change that ``path``'s write carries happened (None: no hint for it)."""
        best: tuple[int, float] | None = None
        for candidate in _covering(path):
            found = self._taken.get(candidate)
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        return None if best is None else best[1]

    def retire(self, upto: int) -> None:
        """Forget the entries of takes up to number ``upto`` (their batch is done)."""
        if self._taken:
            self._taken = {p: v for p, v in self._taken.items() if v[0] > upto}

    def __len__(self) -> int:
        return len(self._pending) + len(self._taken)


class LatencyMeter:
    """Both directions of one sync."""

    def __init__(self, size: int = WINDOW) -> None:
        self.up = Window(size)
        self.down = Window(size)

    def record(
        self,
        window: Window,
        written: Iterable[str],
        events: EventTimes | None,
        applied: dict[str, float],
        fallback: float,
    ) -> int:
        """Add a sample per written path that a hint explains: applied time (``applied``,
        else ``fallback``) minus the event time. Returns how many were added."""
        if events is None:
            return 0
        added = 0
        for path in written:
            at = events.when(path)
            if at is None:
                continue
            window.add(applied.get(path, fallback) - at)
            added += 1
        return added

    def to_json(self, down_clock: str, clock: ClockOffset | None) -> dict[str, Any]:
        """The ``latency`` object of ``status sync --json``."""
        return {
            "window": self.up.size,
            "up": self.up.summary().to_json(),
            "down": self.down.summary().to_json(),
            "down_clock": down_clock,
            "clock": clock.to_json() if clock is not None else None,
        }

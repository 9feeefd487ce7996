"""engine.latency: percentiles, the ring buffer, the clock offset and the event times, as data."""

from __future__ import annotations

import asyncio
import math
import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podsync.engine.latency import (
    CLOCK_ROUNDS,
    WINDOW,
    ClockOffset,
    EventTimes,
    LatencyMeter,
    PingClock,
    Window,
    percentile,
)
from podsync.engine.report import StatusBoard
from podsync.engine.status import SyncStatus, read_status

# -- percentile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "fraction", "expected"),
    [
        pytest.param([7.0], 0.5, 7.0, id="one sample is every percentile"),
        pytest.param([7.0], 0.95, 7.0, id="one sample, p95"),
        pytest.param([1.0, 2.0], 0.5, 1.0, id="p50 of two is the lower (nearest rank)"),
        pytest.param([1.0, 2.0], 0.95, 2.0, id="p95 of two is the upper"),
        pytest.param([1.0, 2.0, 3.0], 0.5, 2.0, id="p50 of three is the middle"),
        pytest.param([float(i) for i in range(1, 21)], 0.95, 19.0, id="p95 of 20 is the 19th"),
        pytest.param([float(i) for i in range(1, 101)], 0.95, 95.0, id="p95 of 100 is the 95th"),
        pytest.param([float(i) for i in range(1, 101)], 0.5, 50.0, id="p50 of 100 is the 50th"),
        pytest.param([float(i) for i in range(1, 1001)], 0.95, 950.0, id="p95 of 1000"),
        pytest.param([1.0, 2.0, 3.0], 1.0, 3.0, id="p100 is the maximum"),
        pytest.param([5.0, 5.0, 5.0, 9.0], 0.5, 5.0, id="ties"),
    ],
)
def test_percentile_nearest_rank(samples: list[float], fraction: float, expected: float) -> None:
    assert percentile(samples, fraction) == expected


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01])
def test_percentile_rejects_fractions_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], fraction)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)


@given(st.lists(st.floats(0, 1e4), min_size=1, max_size=300), st.floats(0.01, 1.0))
def test_percentile_is_a_sample_with_enough_below_it(samples: list[float], fraction: float) -> None:
    ordered = sorted(samples)
    value = percentile(ordered, fraction)
    assert value in ordered
    at_most = sum(1 for s in ordered if s <= value)
    below = sum(1 for s in ordered if s < value)
    # At least the fraction is <= value, and fewer than the fraction is strictly below it.
    assert at_most >= fraction * len(ordered) - 1e-6
    assert below < fraction * len(ordered) + 1e-6


# -- window -------------------------------------------------------------------------------------


def test_an_empty_window_has_no_figures() -> None:
    summary = Window().summary()
    assert (summary.count, summary.p50_ms, summary.p95_ms, summary.max_ms) == (0, None, None, None)
    assert summary.total == 0


def test_window_figures_in_milliseconds() -> None:
    window = Window()
    values = list(range(1, 101))  # 1..100 ms, shuffled: order must not matter
    random.Random(1).shuffle(values)
    for ms in values:
        window.add(ms / 1000)
    summary = window.summary()
    assert summary.count == 100
    assert summary.p50_ms == 50.0
    assert summary.p95_ms == 95.0
    assert summary.max_ms == 100.0
    assert summary.to_json() == {
        "count": 100,
        "p50_ms": 50.0,
        "p95_ms": 95.0,
        "max_ms": 100.0,
        "total": 100,
    }


def test_the_window_keeps_the_last_1000_changes() -> None:
    window = Window()
    assert window.size == WINDOW == 1000
    for _ in range(500):
        window.add(10.0)  # an old slow period...
    for i in range(1000):
        window.add(0.001 * (1 + i % 10))  # ...pushed out by 1000 fast changes
    summary = window.summary()
    assert summary.count == 1000
    assert summary.total == 1500
    assert summary.max_ms == 10.0  # 10 ms, not 10 s
    assert len(window) == 1000


def test_ring_buffer_order_oldest_first() -> None:
    window = Window(size=3)
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        window.add(value)
    assert window.samples() == [3.0, 4.0, 5.0]
    window.add(6.0)
    assert window.samples() == [4.0, 5.0, 6.0]
    partial = Window(size=3)
    partial.add(1.0)
    assert partial.samples() == [1.0]


@given(st.lists(st.floats(0, 100), max_size=50), st.integers(1, 10))
def test_window_holds_exactly_the_latest_samples(values: list[float], size: int) -> None:
    window = Window(size)
    for value in values:
        window.add(value)
    assert window.samples() == values[-size:] if values else window.samples() == []
    assert window.total == len(values)


def test_negative_samples_count_as_zero_and_non_numbers_are_ignored() -> None:
    window = Window()
    window.add(-0.004)  # a clock error: the change was not applied before it happened
    window.add(math.nan)
    window.add(math.inf)
    assert window.samples() == [0.0]
    assert window.total == 1


def test_a_window_holds_at_least_one_sample() -> None:
    with pytest.raises(ValueError):
        Window(0)


def test_figures_are_rounded_to_a_tenth_of_a_millisecond() -> None:
    window = Window()
    window.add(0.0123456)
    assert window.summary().p50_ms == 12.3


# -- clock offset -------------------------------------------------------------------------------


def test_no_ping_no_offset() -> None:
    clock = ClockOffset()
    assert not clock.known
    assert clock.to_local(500.0, arrived=1000.0) == 1000.0  # the hint's arrival
    assert clock.to_json() == {"offset_ms": None, "rtt_ms": None, "pings": 0}


def test_offset_is_far_time_minus_the_midpoint_of_the_round_trip() -> None:
    clock = ClockOffset()
    # Sent at 100.000, the agent (3 s ahead) answered at 103.001, received at 100.002.
    clock.observe(100.000, 103.001, 100.002)
    assert clock.offset == pytest.approx(3.000)
    assert clock.rtt == pytest.approx(0.002)
    # An event the agent stamped 103.500 happened at 100.500 here.
    assert clock.to_local(103.500, arrived=100.600) == pytest.approx(100.500)
    assert clock.to_json() == {"offset_ms": 3000.0, "rtt_ms": 2.0, "pings": 1}


def test_the_smallest_round_trip_wins() -> None:
    clock = ClockOffset()
    clock.observe(0.0, 5.010, 0.020)  # 20 ms: answer taken late, offset off by up to 10 ms
    clock.observe(1.0, 6.0005, 1.001)  # 1 ms: the better estimate
    clock.observe(2.0, 7.100, 2.200)  # 200 ms (waited behind a large write): ignored
    assert clock.rtt == pytest.approx(0.001)
    assert clock.offset == pytest.approx(5.0)
    assert clock.samples == 3


def test_an_old_estimate_gives_way_as_the_clocks_drift() -> None:
    clock = ClockOffset()
    clock.observe(0.0, 7.0005, 0.001)  # 1 ms round trip at t=0: offset 7 s
    clock.observe(10.0, 17.0105, 10.005)  # 5 ms, 10 s later: still worse (1 ms + 1 ms of age)
    assert clock.offset == pytest.approx(7.0) and clock.rtt == pytest.approx(0.001)
    clock.observe(3600.0, 3607.2025, 3600.005)  # an hour later: 1 ms counts as 361 ms
    assert clock.rtt == pytest.approx(0.005)
    assert clock.offset == pytest.approx(7.2)  # the clocks drifted 0.2 s apart meanwhile
    clock.observe(3601.0, 3608.3, 3601.2)  # a ping stuck behind a big write: no
    assert clock.rtt == pytest.approx(0.005)


def test_a_clock_that_runs_backwards_is_ignored() -> None:
    clock = ClockOffset()
    clock.observe(10.0, 5.0, 9.0)  # received before sent: the local clock stepped
    clock.observe(10.0, math.nan, 10.1)
    assert not clock.known
    assert clock.samples == 0


def test_a_far_event_is_never_later_than_its_hint() -> None:
    clock = ClockOffset()
    clock.observe(0.0, 0.0, 0.002)  # offset -1 ms (estimate off by up to 1 ms)
    assert clock.to_local(50.0, arrived=50.0005) == 50.0005


@given(
    st.floats(-1e6, 1e6),  # true offset
    st.floats(0, 1.0),  # request leg
    st.floats(0, 1.0),  # answer leg
)
def test_offset_error_is_at_most_half_the_round_trip(
    true: float, there: float, back: float
) -> None:
    sent = 1_000_000.0
    clock = ClockOffset()
    clock.observe(sent, sent + there + true, sent + there + back)
    assert clock.offset is not None and clock.rtt is not None
    assert abs(clock.offset - true) <= clock.rtt / 2 + 1e-6


def test_ping_clock_numbers_pings_and_matches_answers() -> None:
    clock = PingClock()
    assert clock.ping(100.0) == {"t": "ping", "n": 1}
    assert clock.ping(101.0) == {"t": "ping", "n": 2}
    # The answer to ping 2 (sent at 101.0): the agent is 2 s ahead, 4 ms round trip.
    assert clock.answer(2, 103.002, 101.004) is True  # fewer than CLOCK_ROUNDS: ping again
    assert clock.offset == pytest.approx(2.0)
    assert clock.answer(2, 103.002, 101.004) is False  # answered already: ignored
    assert clock.answer(9, 1.0, 101.0) is False  # never sent
    assert clock.samples == 1


def test_ping_clock_wants_clock_rounds_answers_then_stops() -> None:
    clock = PingClock()
    wanted = []
    for i in range(CLOCK_ROUNDS + 2):
        number = clock.ping(float(i))["n"]
        wanted.append(clock.answer(number, float(i), float(i) + 0.001))
    assert wanted == [True] * (CLOCK_ROUNDS - 1) + [False] * 3


def test_ping_clock_answer_without_a_clock_counts_nothing() -> None:
    clock = PingClock()
    clock.ping(1.0)
    assert clock.answer(1, None, 1.1) is False
    assert not clock.known and clock.samples == 0


def test_ping_clock_forgets_old_pings() -> None:
    clock = PingClock(kept=3)
    for i in range(5):
        clock.ping(float(i))
    assert clock.answer(1, 0.0, 10.0) is False  # forgotten: pings 3, 4, 5 are awaited
    assert clock.answer(2, 0.0, 10.0) is False
    assert clock.answer(3, 2.0, 2.001) is True


# -- event times --------------------------------------------------------------------------------


def test_a_written_path_gets_the_time_of_its_hint() -> None:
    times = EventTimes()
    times.note(["src/a.py"], 10.0)
    assert times.when("src/a.py") is None  # not taken yet: the engine has not seen it
    times.take()
    assert times.when("src/a.py") == 10.0
    assert times.when("src/b.py") is None


def test_the_earliest_event_of_a_burst_counts() -> None:
    times = EventTimes()
    times.note(["a"], 10.0)
    times.note(["a"], 10.2)  # saved again before the engine took the hints
    times.note(["a"], 9.9)  # a later-arriving report of an earlier event
    times.take()
    assert times.when("a") == 9.9


def test_a_hinted_directory_covers_what_is_below_it() -> None:
    times = EventTimes()
    times.note(["src"], 3.0)
    times.note([""], 1.0)
    times.take()
    assert times.when("src/deep/x.py") == 3.0  # the nearest of the same take
    assert times.when("docs/y.md") == 1.0  # the root covers everything


def test_the_latest_take_wins_over_an_older_entry() -> None:
    times = EventTimes()
    times.note(["src/lib"], 1.0)
    times.take()  # take 1 (its batch is still running)
    times.note(["src"], 5.0)
    times.take()  # take 2 covers src/lib/x too, and is newer
    assert times.when("src/lib/x") == 5.0
    times.note(["src/lib/x"], 7.0)
    times.take()
    assert times.when("src/lib/x") == 7.0


def test_taking_a_path_again_replaces_its_time() -> None:
    times = EventTimes()
    times.note(["a"], 1.0)  # an echo of our own download: nothing uploaded
    times.take()
    times.note(["a"], 9.0)  # later a real save
    times.take()
    assert times.when("a") == 9.0


def test_retire_forgets_the_takes_of_a_finished_batch_only() -> None:
    times = EventTimes()
    times.note(["a", "b"], 1.0)
    times.take()
    mark = times.takes  # a batch begins with take 1
    times.note(["c"], 2.0)
    times.take()  # take 2 arrives while the batch runs
    times.note(["d"], 3.0)  # not taken yet
    times.retire(mark)
    assert times.when("a") is None and times.when("b") is None
    assert times.when("c") == 2.0
    times.take()
    assert times.when("d") == 3.0
    assert len(times) == 2


def test_memory_is_bounded_and_keeps_the_earliest_time() -> None:
    times = EventTimes(limit=10)
    times.note([f"f{i}" for i in range(11)], 5.0)
    times.note(["g"], 4.0)
    assert len(times) <= 10
    times.take()
    assert times.when("anything/at/all") == 5.0  # the root stands for the 11 collapsed
    assert times.when("g") == 4.0
    for i in range(3):
        times.note([f"h{i}-{j}" for j in range(8)], 10.0 + i)
        times.take()
    assert len(times) <= 10


def test_a_bounded_take_collapses_to_the_root() -> None:
    times = EventTimes(limit=4)
    times.note(["a", "b"], 2.0)
    times.take()
    times.note(["c", "d", "e"], 3.0)
    times.take()  # five entries: one root entry, the earliest time
    assert len(times) == 1
    assert times.when("z") == 2.0


# -- meter --------------------------------------------------------------------------------------


def test_meter_samples_written_paths_that_a_hint_explains() -> None:
    meter = LatencyMeter()
    times = EventTimes()
    times.note(["a", "b"], 100.0)
    times.take()
    added = meter.record(meter.up, ["a", "b", "unhinted"], times, {"a": 100.012}, fallback=100.050)
    assert added == 2
    assert sorted(meter.up.samples()) == pytest.approx([0.012, 0.050])
    assert meter.record(meter.down, ["a"], None, {}, 0.0) == 0  # side not measured


def test_meter_json_shape() -> None:
    meter = LatencyMeter()
    for ms in (10, 20, 30):
        meter.up.add(ms / 1000)
    clock = ClockOffset()
    clock.observe(0.0, 0.0015, 0.001)
    data = meter.to_json("agent_event", clock)
    assert data == {
        "window": 1000,
        "up": {"count": 3, "p50_ms": 20.0, "p95_ms": 30.0, "max_ms": 30.0, "total": 3},
        "down": {"count": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "total": 0},
        "down_clock": "agent_event",
        "clock": {"offset_ms": 1.0, "rtt_ms": 1.0, "pings": 1},
    }
    assert meter.to_json("hint_arrival", None)["clock"] is None


def test_figures_of_a_random_stream_match_a_sort() -> None:
    rng = random.Random(7)
    window = Window()
    values = [rng.expovariate(1 / 0.03) for _ in range(2500)]
    for value in values:
        window.add(value)
    kept = sorted(values[-1000:])
    summary = window.summary()
    assert summary.p50_ms == round(kept[499] * 1000, 1)
    assert summary.p95_ms == round(kept[949] * 1000, 1)
    assert summary.max_ms == round(kept[-1] * 1000, 1)


# -- the session's glue (engine.measure) ---------------------------------------------------------


class _Spec:
    name = "s"


class _Side:
    """Test double of an endpoint, as the glue sees it: event times and acknowledgement times
    (what a real endpoint stamps at real events; here the test sets them)."""

    def __init__(self) -> None:
        self.event_times = EventTimes()
        self.applied_at: dict[str, float] = {}


def _glue(tmp: Path, batch: Any = None) -> Any:
    """A MeasuredWatch whose watch phase's ``_sync_paths`` is ``batch`` (the real one rescans
    and executes; here the test plays the batch)."""
    from podsync.engine.measure import MeasuredWatch
    from podsync.engine.watch import WatchPhase

    class Batch(WatchPhase):
        async def _sync_paths(self, *args: Any, **kwargs: Any) -> None:
            await batch()

    class Glue(MeasuredWatch, Batch):
        def __init__(self) -> None:
            self.board = StatusBoard(tmp)
            self.board.add(SyncStatus("s", "/l", "docker:x:/app", "python agent", "watching"))
            self.spec = _Spec()  # type: ignore[assignment]

    return Glue()


def test_glue_measures_watch_batches_and_retires_their_hints(tmp_path: Path) -> None:
    from podsync.engine.executor import Outcome

    local, remote = _Side(), _Side()
    now = time.time()
    local.event_times.note(["a.py"], now - 0.040)
    local.event_times.take()
    remote.event_times.note(["b.txt"], now - 0.030)
    remote.event_times.take()

    async def batch() -> None:
        remote.applied_at["a.py"] = now - 0.010  # the agent acknowledged a.py then
        local.applied_at["b.txt"] = now - 0.005
        glue._measure(Outcome(uploaded=["a.py"], downloaded=["b.txt"]), "sync", local, remote)

    glue = _glue(tmp_path, batch)

    async def go() -> None:
        await glue._sync_paths(local, remote, [], [], 1)
        glue._flush_due.cancel()

    asyncio.run(go())
    assert glue.latency.up.samples() == pytest.approx([0.030], abs=1e-6)
    assert glue.latency.down.samples() == pytest.approx([0.025], abs=1e-6)
    assert remote.applied_at == {} and local.applied_at == {}  # cleared after each batch
    assert local.event_times.when("a.py") is None  # the batch's hints are retired
    glue.board.flush()
    shown = read_status(glue.board.path)
    assert shown is not None and shown.syncs[0].latency is not None
    assert shown.syncs[0].latency["down_clock"] == "hint_arrival"
    assert shown.syncs[0].latency["up"]["p50_ms"] == 30.0


def test_glue_ignores_other_phases_and_unmeasured_endpoints(tmp_path: Path) -> None:
    from podsync.engine.executor import Outcome

    glue = _glue(tmp_path)
    local, remote = _Side(), _Side()
    local.event_times.note(["a"], 1.0)
    local.event_times.take()
    remote.applied_at["a"] = 2.0
    glue._measure(Outcome(uploaded=["a"]), "initial sync", local, remote)
    assert glue.latency.up.total == 0 and remote.applied_at == {}
    glue._measuring = True
    glue._measure(Outcome(uploaded=["a"], downloaded=["x"]), "sync", object(), object())
    assert glue.latency.up.total == 0 and glue.board.rows["s"].latency is None

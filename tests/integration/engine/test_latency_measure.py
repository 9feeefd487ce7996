"""The engine's latency figures (issue 10, part 4) on a real sync in-process: a local folder
and a far folder served by the real Python agent (a subprocess), real inotify on both sides.

What counts: each write of the watch phase that a hint explains, once (a burst of files in a
new folder: every file and the folder); deletions and the initial sync do not count; the
status row carries the figures. The Docker version with an external probe for the
tolerance is tests/e2e/test_latency.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.engine.engine_helpers import EngineThread, local_spec
from tests.support.wait import wait_until

from podsync.engine.latency import percentile

SAVES = 10
TOLERANCE_MS = 50.0  # as in tests/e2e/test_latency.py (see its docstring)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Path, Path, EngineThread]]:
    local, far = tmp_path / "local", tmp_path / "far"
    local.mkdir()
    far.mkdir()
    (local / "before.txt").write_text("initial sync: not a save\n")
    engine = EngineThread(local_spec(local, far))
    try:
        wait_until(engine.watching, 30, message="the engine never reached the watch phase")
        yield local, far, engine
    finally:
        failure = engine.failure()
        engine.stop()
        assert failure is None, failure


def saved(path: Path, seen: Path, content: str) -> float:
    """Write ``path``, wait for ``seen`` to hold it: the seconds it took (test's clock)."""
    start = time.monotonic()
    path.write_text(content)
    wait_until(lambda: seen.is_file() and seen.read_text() == content, 10, interval=0.001)
    return time.monotonic() - start


def p50_ms(samples: list[float]) -> float:
    return percentile(sorted(samples), 0.5) * 1000


def test_each_save_is_measured_once_in_its_direction(
    pair: tuple[Path, Path, EngineThread],
) -> None:
    local, far, engine = pair
    meter = engine.session.latency
    assert (meter.up.total, meter.down.total) == (0, 0)  # the initial sync is not measured
    assert engine.session.board.rows["machine"].latency is None

    up = [saved(local / f"u{i}", far / f"u{i}", f"up {i}\n") for i in range(SAVES)]
    wait_until(lambda: meter.up.total >= SAVES, 10, message="ups not measured")
    down = [saved(far / f"d{i}", local / f"d{i}", f"down {i}\n") for i in range(SAVES)]
    wait_until(lambda: meter.down.total >= SAVES, 10, message="downs not measured")
    assert (meter.up.total, meter.down.total) == (SAVES, SAVES)

    up_ms, down_ms = meter.up.summary().p50_ms, meter.down.summary().p50_ms
    assert up_ms is not None and down_ms is not None
    assert abs(up_ms - p50_ms(up)) <= TOLERANCE_MS, (up_ms, up)
    assert abs(down_ms - p50_ms(down)) <= TOLERANCE_MS, (down_ms, down)

    def shown() -> bool:
        latency = engine.session.board.rows["machine"].latency
        return latency is not None and latency["down"]["count"] == SAVES

    wait_until(shown, 5, message="the status row never got the figures")
    latency = engine.session.board.rows["machine"].latency
    assert latency is not None
    assert latency["up"]["count"] == SAVES and latency["down_clock"] == "agent_event"
    assert latency["clock"]["pings"] >= 1


def test_a_burst_counts_every_write_and_deletions_count_nothing(
    pair: tuple[Path, Path, EngineThread],
) -> None:
    local, far, engine = pair
    meter = engine.session.latency
    (local / "pkg").mkdir()
    for i in range(40):
        (local / "pkg" / f"m{i}.py").write_text(f"# {i}\n")
    wait_until(lambda: len(list((far / "pkg").glob("*.py"))) == 40, 20, message="burst")
    # Every file and the folder, each once (hints name the files or the new folder).
    wait_until(lambda: meter.up.total >= 41, 10, message=f"only {meter.up.total} measured")
    assert meter.up.total == 41
    summary = meter.up.summary()
    assert summary.count == 41 and summary.max_ms is not None and summary.max_ms < 10_000

    (far / "pkg" / "m0.py").unlink()
    (local / "before.txt").unlink()
    wait_until(lambda: not (local / "pkg" / "m0.py").exists(), 10, message="down delete")
    wait_until(lambda: not (far / "before.txt").exists(), 10, message="up delete")
    (local / "marker").write_text("after the deletions\n")  # one more write: a fence
    wait_until(lambda: meter.up.total >= 42, 10, message="marker not measured")
    assert (meter.up.total, meter.down.total) == (42, 0)

"""``status sync`` shows the measured latency: p50/p95 per direction in the table, the whole
figures in ``--json`` (issue 10, part 4)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from podsync.cli.views import latency_text, show_status, status_json
from podsync.engine.latency import ClockOffset, LatencyMeter
from podsync.engine.status import StatusFile, SyncStatus, read_status, status_path, write_status


def row(latency: dict[str, Any] | None) -> SyncStatus:
    return SyncStatus(
        "sync-0", "/w/app", "docker:web:/app", "python agent", "watching", latency=latency
    )


def measured() -> dict[str, Any]:
    meter = LatencyMeter()
    for ms in (4, 5, 6, 80):
        meter.up.add(ms / 1000)
    for ms in (12, 14, 400):
        meter.down.add(ms / 1000)
    clock = ClockOffset()
    clock.observe(10.0, 10.0004, 10.001)
    return meter.to_json("agent_event", clock)


def test_latency_cell_shows_p50_and_p95_per_direction() -> None:
    assert latency_text(row(measured())) == "↑ 5.0/80\n↓ 14/400"


@pytest.mark.parametrize(
    "latency",
    [
        pytest.param(None, id="nothing measured yet"),
        pytest.param(LatencyMeter().to_json("hint_arrival", None), id="no sample in the window"),
        pytest.param({"up": "fast", "down": []}, id="malformed: never raises"),
        pytest.param({"up": {"count": 3, "p50_ms": "x", "p95_ms": None}}, id="malformed numbers"),
    ],
)
def test_latency_cell_without_figures_is_a_dash(latency: dict[str, Any] | None) -> None:
    assert latency_text(row(latency)) == "-"


def test_one_direction_only() -> None:
    meter = LatencyMeter()
    meter.down.add(0.0031)
    assert latency_text(row(meter.to_json("hint_arrival", None))) == "↓ 3.1/3.1"


def test_status_file_round_trip_text_and_json(tmp_path: Path) -> None:
    path = status_path(tmp_path)
    write_status(path, StatusFile(os.getpid(), "2026-12-06T04:00:00+00:00", [row(measured())]))
    status = read_status(path)
    assert status is not None and status.syncs[0].latency == measured()

    out = io.StringIO()
    show_status(status, tmp_path, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "Latency" in text and "p50/p95" in text and "(ms)" in text
    assert "↑ 5.0/80" in text and "↓ 14/400" in text

    data = json.loads(status_json(status))
    latency = data["syncs"][0]["latency"]
    assert latency["up"] == {"count": 4, "p50_ms": 5.0, "p95_ms": 80.0, "max_ms": 80.0, "total": 4}
    assert latency["down"]["max_ms"] == 400.0
    assert latency["down_clock"] == "agent_event"
    assert latency["clock"] == {"offset_ms": -0.1, "rtt_ms": 1.0, "pings": 1}
    assert latency["window"] == 1000


def test_a_status_file_without_latency_still_reads(tmp_path: Path) -> None:
    """A file written before the field existed (or a sync not measured yet)."""
    path = status_path(tmp_path)
    write_status(path, StatusFile(os.getpid(), "2026-12-06T04:00:00+00:00", [row(None)]))
    raw = json.loads(path.read_text())
    del raw["syncs"][0]["latency"]
    path.write_text(json.dumps(raw))
    status = read_status(path)
    assert status is not None and status.syncs[0].latency is None
    out = io.StringIO()
    show_status(status, tmp_path, Console(file=out, width=200, color_system=None))
    assert "watching" in out.getvalue()

"""`podsync status sync` with --all-replicas rows: one row per replica, the primary marked
(status file written by write_status, read by the real command)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from podsync.cli.app import run_cli
from podsync.engine.status import StatusFile, SyncStatus, write_status


def test_status_marks_the_primary_and_each_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "160")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = [
        SyncStatus("sync", "/w", "ns/web-a:main:/app", "python", "watching", role="primary"),
        SyncStatus("sync@web-b", "/w", "ns/web-b:main:/app", "python", "watching", role="replica"),
        SyncStatus("sync@web-c", "/w", "ns/web-c:main:/app", "python", "starting", role="replica"),
    ]
    write_status(
        tmp_path / ".devspace" / "podsync" / "status.json", StatusFile(os.getpid(), now, rows)
    )
    assert run_cli(["status", "sync"]) == 0
    out = capsys.readouterr().out
    for text in ("sync (primary)", "sync@web-b (replica)", "sync@web-c (replica)", "web-c"):
        assert text in out, out
    assert run_cli(["status", "sync", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["role"]) for s in data["syncs"]] == [
        ("sync", "primary"),
        ("sync@web-b", "replica"),
        ("sync@web-c", "replica"),
    ]


def test_rows_without_all_replicas_have_no_role() -> None:
    row = SyncStatus("sync-0", "/w", "docker:web:/app", "shell", "watching")
    assert row.role is None

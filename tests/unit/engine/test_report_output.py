"""What a running sync shows (sync.log, console, status file, status views) when paths are
not plain text: undecodable bytes (surrogate escapes), newlines, terminal escapes, rich
markup. Nothing may raise, every message stays one line, the exact names stay in the data.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from rich.console import Console as RichConsole

from podsync.cli.views import list_sync, show_status, status_json
from podsync.engine.report import Console, StatusBoard, SyncLog
from podsync.engine.status import SyncStatus, read_status

NASTY = os.fsdecode(b"dir\xff/new\nline\x1b[31m[bold]x")
SHOWN = "dir\\xff/new\\nline\\x1b[31m[bold]x"


def test_sync_log_writes_one_escaped_line(tmp_path: Path) -> None:
    log = SyncLog(tmp_path)
    log.write("s\udcfe", "WARN", f"warning: {NASTY}: skipped")
    log.write("s", "INFO", "after")
    log.close()
    lines = (tmp_path / "logs" / "sync.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(f"WARN  [s\\xfe] warning: {SHOWN}: skipped")


def test_console_line_is_one_escaped_line_even_on_a_strict_stream() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    Console(verbose=True, stream=stream).line(f"[s] conflict: {NASTY}: both changed")
    assert raw.getvalue().decode() == f"[s] conflict: {SHOWN}: both changed\n"


def _row(**changes: object) -> SyncStatus:
    base: dict[str, object] = {
        "name": "s",
        "local": "/p",
        "remote": "c:/app",
        "agent": "python",
        "state": "watching",
    }
    return SyncStatus(**{**base, **changes})  # type: ignore[arg-type]


def test_status_board_writes_printable_json_and_keeps_its_rows(tmp_path: Path) -> None:
    board = StatusBoard(tmp_path)
    board.add(_row(local=os.fsdecode(b"/home/caf\xe9"), last_activity=f"uploaded {NASTY}"))
    board.update("s", force=True, message=f"problem: {NASTY}")
    status = read_status(board.path)
    assert status is not None
    row = status.syncs[0]
    assert (row.local, row.last_activity, row.message) == (
        "/home/caf\\xe9",
        f"uploaded {SHOWN}",
        f"problem: {SHOWN}",
    )
    assert board.rows["s"].message == f"problem: {NASTY}"  # the engine's own copy is exact
    raw = board.path.read_bytes()
    raw.decode("utf-8")
    json.loads(raw)


def test_status_views_never_raise_or_read_markup(tmp_path: Path) -> None:
    board = StatusBoard(tmp_path)
    board.add(_row(message=NASTY))
    status = read_status(board.path)
    out = io.StringIO()
    show_status(status, tmp_path, RichConsole(file=out, width=400, color_system=None))
    # one table row, the message shown literally ([bold] is not taken as a style tag)
    assert f"watching: {SHOWN}" in out.getvalue()
    # the raw status keeps escaped text only: the JSON view is plain ASCII-safe UTF-8
    status_json(status).encode("utf-8")


def test_list_sync_shows_config_values_literally(tmp_path: Path) -> None:
    from podsync.config.loader import load_text

    text = (
        "images:\n  app:\n    image: a\n"
        "dev:\n  sync:\n  - imageName: app\n    excludePaths:\n"
        '    - "[red]x\\e"\n'
    )
    cfg = load_text(text, tmp_path / "devspace.yaml")
    out = io.StringIO()
    list_sync(cfg, RichConsole(file=out, width=400, color_system=None))
    assert "[red]x\\x1b" in out.getvalue()


def test_progress_bar_shows_the_sync_name_literally() -> None:
    """On a terminal the bar's label is "[name] initial sync": not rich markup (which ate
    "[name]"), not a format string (a "{" in the name)."""
    from podsync.engine.report import Progress

    console = Console(verbose=False, stream=io.StringIO())
    console.tty = True
    bar = Progress(console, "web{0}\udcff", files=2, nbytes=10)
    try:
        assert bar._bar is not None
        label = bar._bar.columns[0].render(bar._bar.tasks[0])
        assert label.plain == "[web{0}\\xff] initial sync"
    finally:
        bar.finish()


def test_a_resume_reads_as_resuming_with_its_progress_not_as_an_initial_sync() -> None:
    from podsync.cli.views import state_text

    assert state_text(_row(state="resuming", progress=0.4)) == "resuming 40%"
    assert state_text(_row(state="initial sync", progress=0.25)) == "initial sync 25%"

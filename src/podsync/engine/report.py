"""What a running sync tells the user: console, sync log, status file.

Owns: ``.devspace/logs/sync.log`` lines, the status board behind ``podsync status sync`` and
the initial-sync progress display. May import: the standard library, rich,
``podsync.core``, ``podsync.engine.status``.

Everything shown goes through ``core.paths.printable`` here, at the last step: messages carry
paths as they are on disk (a non-UTF-8 name is a ``str`` with surrogate escapes, a name may
hold a newline or a terminal escape), and no sink may choke on them or be split or styled by
them. The data path keeps the exact names; only the text shown is escaped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from podsync.core.paths import printable
from podsync.core.plan import format_size
from podsync.engine.status import StatusFile, SyncStatus, status_path, write_status


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class SyncLog:
    """Append-only ``sync.log``, one line per event, shared by all syncs of the process."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "logs" / "sync.log"
        self._lock = threading.Lock()
        self._handle: TextIO | None = None

    def write(self, name: str, level: str, message: str) -> None:
        with self._lock:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8", errors="backslashreplace")
            line = printable(f"{level:<5} [{name}] {message}")
            self._handle.write(f"{now_iso()} {line}\n")
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


class StatusBoard:
    """The status file of this process: one row per sync, rewritten atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = status_path(state_dir)
        self.rows: dict[str, SyncStatus] = {}
        self._last_write = 0.0
        self._dirty = False

    def add(self, row: SyncStatus) -> None:
        self.rows[row.name] = row
        self.flush()

    def update(self, name: str, force: bool = False, **changes: Any) -> None:
        self.rows[name] = dataclasses.replace(self.rows[name], **changes)
        self._dirty = True
        if force or time.monotonic() - self._last_write > 0.25:
            self.flush()

    def flush(self) -> None:
        self._last_write = time.monotonic()
        self._dirty = False
        rows = [_shown(row) for row in self.rows.values()]
        try:
            write_status(self.path, StatusFile(os.getpid(), now_iso(), rows))
        except OSError as exc:  # status is a convenience; never fail a sync for it
            shown = printable(f"podsync: cannot write {self.path}: {exc.strerror}")
            print(shown, file=sys.stderr)

    def flush_if_dirty(self) -> None:
        if self._dirty:
            self.flush()

    def remove_file(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _shown(row: SyncStatus) -> SyncStatus:
    """A copy of ``row`` with every text field printable (the board keeps the exact text)."""
    changes: dict[str, Any] = {
        f.name: printable(value)
        for f in dataclasses.fields(row)
        if isinstance(value := getattr(row, f.name), str) and not value.isprintable()
    }
    return dataclasses.replace(row, **changes) if changes else row


class Console:
    """Prints to the terminal; progress as a rich bar on a TTY, plain lines otherwise."""

    def __init__(self, verbose: bool, stream: TextIO | None = None) -> None:
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """Write ``text`` as exactly one line (escaped by ``printable``): a diagnostic."""
        self._write(self.stream, text)

    def output(self, text: str) -> None:
        """Write ``text`` as one line of the command's output (stdout: ``--dry-run``'s plan),
        which can be piped apart from the diagnostics."""
        self._write(sys.stdout, text)

    def _write(self, stream: TextIO, text: str) -> None:
        text = printable(text)
        with self._lock:
            stream.write(text + "\n")
            stream.flush()


def batch_line(groups: Sequence[tuple[str, Sequence[str]]], shown: int = 3) -> str:
    """One console line for a watch-phase batch, however big: per kind, the count and the
    first ``shown`` names, e.g. ``uploaded 3: a.txt b.txt c.txt; deleted 1 in the container:
    old.txt``. Each verb holds ``{n}`` for the count; kinds with no path are left out."""
    parts = []
    for verb, paths in groups:
        if not paths:
            continue
        names = " ".join(paths[:shown])
        if len(paths) > shown:
            names += f" (+{len(paths) - shown} more)"
        parts.append(f"{verb.format(n=len(paths))}: {names}")
    return "; ".join(parts)


class Progress:
    """Initial-sync progress: files, bytes, rate, ETA."""

    def __init__(self, console: Console, name: str, files: int, nbytes: int) -> None:
        self.console = console
        self.name = name
        self.total_files = files
        self.total_bytes = nbytes
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._bar: Any = None
        self._task: Any = None
        if console.tty and files:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            # Plain text: "[name]" would be read as rich markup (and "{" as a format field).
            label = printable(name).replace("{", "{{").replace("}", "}}")
            self._bar = RichProgress(
                TextColumn(f"[{label}] initial sync", markup=False),
                BarColumn(),
                TextColumn("{task.fields[files]}"),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task("sync", total=max(nbytes, 1), files="")
            self._bar.start()

    @property
    def fraction(self) -> float:
        if self.total_bytes:
            return min(1.0, self.bytes / self.total_bytes)
        return min(1.0, self.files / self.total_files) if self.total_files else 1.0

    def advance(self, files: int, nbytes: int) -> None:
        self.files += files
        self.bytes += nbytes
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(
                self._task, completed=self.bytes, files=f"{self.files}/{self.total_files} files"
            )
        elif now - self._last_line >= 2.0:
            self._last_line = now
            rate = self.bytes / max(now - self.started, 1e-6)
            left = (self.total_bytes - self.bytes) / rate if rate > 0 else 0.0
            self.console.line(
                f"[{self.name}] initial sync {self.fraction * 100:.0f}%: "
                f"{self.files}/{self.total_files} files, {format_size(self.bytes)}"
                f"/{format_size(self.total_bytes)}, {format_size(int(rate))}/s, ETA {left:.0f} s"
            )

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

"""The status file shared by a running engine (writer) and ``podsync status sync`` (reader).

Owns: :class:`SyncStatus`, :class:`StatusFile`, where the file lives, its JSON form, and the
atomic write. May import: the standard library only.

The engine rewrites ``<state_dir>/podsync/status.json`` whenever something visible changes
(at most a few times per second); readers never see a half-written file because every write
is temp file + rename. A file left behind by a process that died is ignored (pid check).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

SyncState = Literal[
    "starting", "initial sync", "resuming", "watching", "reconnecting", "halted", "error", "stopped"
]
STATES: tuple[str, ...] = get_args(SyncState)

#: Bump when a field changes meaning; readers ignore files of another version.
STATUS_VERSION = 1


@dataclass(frozen=True)
class SyncStatus:
    """One sync pair as the user sees it. ``progress`` is 0.0-1.0 during the initial sync,
    else None; times are ISO 8601 UTC strings."""

    name: str
    local: str
    remote: str
    agent: str
    state: SyncState
    progress: float | None = None
    conflicts: int = 0
    last_activity_time: str | None = None
    last_activity: str | None = None
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    message: str | None = None
    #: With --all-replicas: "primary" (synced both ways) or "replica" (upload only); else None.
    role: str | None = None
    #: Save -> applied latency per direction over the last changes (``engine.latency``,
    #: ``LatencyMeter.to_json``); None until the watch phase has measured a change.
    latency: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown sync state {self.state!r}; expected one of {STATES}")


@dataclass(frozen=True)
class StatusFile:
    """Everything one engine process reports: its pid, when it last wrote, its syncs."""

    pid: int
    updated: str
    syncs: list[SyncStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATUS_VERSION, **asdict(self)}


def status_path(state_dir: Path) -> Path:
    """``<state_dir>/podsync/status.json``."""
    return Path(state_dir) / "podsync" / "status.json"


def write_status(path: Path, status: StatusFile) -> None:
    """Atomically replace ``path`` with ``status`` (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(status.to_json(), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (signal 0 probes without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_status(path: Path) -> StatusFile | None:
    """The status of the running engine, or None when no sync is running: no file, a file
    from a process that is gone, or a file this version cannot read."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    try:
        parsed = _parse(raw)
    except (KeyError, TypeError, ValueError):
        return None
    if parsed is None or not pid_alive(parsed.pid):
        return None
    return parsed


def _parse(raw: Any) -> StatusFile | None:
    if not isinstance(raw, dict) or raw.get("version") != STATUS_VERSION:
        return None
    names = set(SyncStatus.__dataclass_fields__)
    syncs = [
        SyncStatus(**{k: v for k, v in cast(dict[str, Any], item).items() if k in names})
        for item in raw["syncs"]
    ]
    return StatusFile(pid=int(raw["pid"]), updated=str(raw["updated"]), syncs=syncs)

"""The last agreed state of a sync pair, kept on disk between runs.

Owns: where a pair's state lives (``<project>/.devspace/podsync/state/``), its file format,
and loading it back with every value validated. May import: the standard library,
``podsync.core``, ``podsync.errors``.

One file per pair, named by a hash of its key: the local folder, the target as the user named
it (a Kubernetes selector, not the pod of the day) and the container path. A file records
whose filesystems its entries describe: ``fsid``, the container filesystem's identity as the
agent reports it (a random id kept outside the synced folder, joined with the hostname: a new
pod or a recreated container has another one), and ``local_id``, the local folder's device
and inode. The session uses the container side only when ``fsid`` matches, and the local side
only when ``local_id`` does.

Format: zlib-compressed JSON (``ensure_ascii`` keeps undecodable file-name bytes, held as lone
surrogates, byte-exact), columns rather than records, written to a temporary file and renamed.
Bounded: at most :data:`MAX_ENTRIES` records per pair (a larger tree is not persisted; the next
start runs the spec's initial sync, which is safe) and :data:`MAX_FILES` pairs per project
(the least recently saved are dropped). A file that is unreadable, corrupt, of another
version or of another pair is ignored with one line; it never stops a sync.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podsync.core.entry import Entry
from podsync.core.paths import relpath
from podsync.core.plan import Ancestor, AncestorEntry, ancestor_entry
from podsync.errors import PodsyncError

FORMAT = "podsync-state"
VERSION = 1
#: Pairs kept per project; older state files are removed when a new one is written.
MAX_FILES = 64
#: Records per pair. 2M entries is ~60-80 MB of JSON before compression.
MAX_ENTRIES = 2_000_000
#: A state file larger than this (compressed) is not read.
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class PairKey:
    """What identifies a sync pair across runs."""

    local_root: str
    target: str
    container_path: str

    def digest(self) -> str:
        raw = json.dumps([self.local_root, self.target, self.container_path])
        return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def as_list(self) -> list[str]:
        return [self.local_root, self.target, self.container_path]


@dataclass(frozen=True)
class Saved:
    """A pair's state as loaded: the ancestor and whose filesystems it describes."""

    ancestor: Ancestor
    fsid: str | None
    local_id: tuple[int, int] | None
    saved_at: float


class StateError(PodsyncError):
    """A state file that cannot be used (the message says why, in one line)."""


def local_identity(root: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the local folder, None when it is not there."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class StateStore:
    """The state file of one pair under ``state_dir`` (the project's ``.devspace``)."""

    def __init__(self, state_dir: Path, key: PairKey) -> None:
        self.key = key
        self.folder = Path(state_dir) / "podsync" / "state"
        self.path = self.folder / f"{key.digest()}.state"

    # -- reading ------------------------------------------------------------------------
    def load(self) -> Saved | None:
        """The saved state, None when there is none; raises :class:`StateError` when a file
        is there but cannot be used."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise StateError(f"{self.path} is larger than {MAX_FILE_BYTES} bytes")
        try:
            doc = json.loads(zlib.decompress(raw).decode("utf-8"))
            return self._parse(doc)
        except StateError:
            raise
        except (PodsyncError, zlib.error, ValueError, UnicodeDecodeError, TypeError) as exc:
            raise StateError(f"{self.path} is corrupt ({_short(exc)})") from None

    def _parse(self, doc: Any) -> Saved:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise StateError(f"{self.path} is not a podsync state file")
        if doc.get("version") != VERSION:
            raise StateError(f"{self.path} has format version {doc.get('version')!r}")
        if doc.get("key") != self.key.as_list():
            raise StateError(f"{self.path} belongs to another sync pair")
        paths, loc, rem, conflicts = (doc.get(k) for k in ("paths", "local", "remote", "conflict"))
        if not (
            isinstance(paths, list)
            and isinstance(loc, list)
            and isinstance(rem, list)
            and isinstance(conflicts, str)
            and len(paths) == len(loc) == len(rem) == len(conflicts)
            and len(paths) <= MAX_ENTRIES
            and not conflicts.strip("01")
        ):
            raise StateError(f"{self.path} is corrupt (columns)")
        ancestor: Ancestor = {}
        for path, lo, re, flag in zip(paths, loc, rem, conflicts, strict=True):
            key = relpath(path)
            if not key:
                raise StateError(f"{self.path} is corrupt (a record of the root)")
            local = None if lo is None else Entry.from_wire(lo)
            remote = None if re is None else Entry.from_wire(re)
            if local is None and remote is None:
                raise StateError(f"{self.path} is corrupt (an empty record)")
            ancestor[key] = ancestor_entry(local, remote, flag == "1")
        fsid = doc.get("fsid")
        local_id = doc.get("local_id")
        saved_at = doc.get("saved")
        return Saved(
            ancestor,
            fsid if isinstance(fsid, str) else None,
            _pair(local_id),
            float(saved_at) if isinstance(saved_at, (int, float)) else 0.0,
        )

    # -- writing ------------------------------------------------------------------------
    def save(
        self, ancestor: dict[Any, AncestorEntry], fsid: str | None, local_id: tuple[int, int] | None
    ) -> bool:
        """Write the state atomically (False when the tree is too large to keep). Blocking:
        run it in a thread for big trees."""
        if len(ancestor) > MAX_ENTRIES:
            self.forget()
            return False
        paths = list(ancestor)
        pairs = list(ancestor.values())
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "key": self.key.as_list(),
            "fsid": fsid,
            "local_id": list(local_id) if local_id else None,
            "saved": time.time(),
            "paths": paths,
            "local": [None if a.local is None else a.local.to_wire() for a in pairs],
            "remote": [None if a.remote is None else a.remote.to_wire() for a in pairs],
            "conflict": "".join("1" if a.conflict else "0" for a in pairs),
        }
        data = zlib.compress(json.dumps(doc, separators=(",", ":")).encode("ascii"), 1)
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self.folder / f".{self.path.name}.{os.getpid()}.tmp"
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
            os.replace(temp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        self._prune()
        return True

    def forget(self) -> None:
        """Remove the pair's state (``--reset-state``)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _prune(self) -> None:
        try:
            files = [p for p in self.folder.iterdir() if p.suffix == ".state"]
        except OSError:
            return
        if len(files) <= MAX_FILES:
            return
        files.sort(key=_mtime)
        for old in files[: len(files) - MAX_FILES]:
            if old != self.path:
                with contextlib.suppress(OSError):
                    old.unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _pair(raw: Any) -> tuple[int, int] | None:
    if (
        isinstance(raw, list)
        and len(raw) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in raw)
    ):
        return (raw[0], raw[1])
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]

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

Format: a magic line, then three length-prefixed parts: a JSON header (key, identities,
conflicted paths) and each side's entries in the wire's listing codec (columns, compressed
above 64 KiB, validated in bulk on load exactly as a listing from the container is; file-name
bytes that are not UTF-8 stay byte-exact). Written to a temporary file and renamed.
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
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podsync.core.ancestor import Ancestor, AncestorEntry, ancestor_entry
from podsync.core.entry import Snapshot
from podsync.core.paths import RelPath, relpath
from podsync.errors import PodsyncError
from podsync.wire.messages import decode_listing, encode_listing

FORMAT = "podsync-state"
VERSION = 2
MAGIC = b"\x89PSYNCST\n"
_LEN = struct.Struct(">I")
#: What os.utime accepts (a signed 64-bit count of nanoseconds).
MIN_MTIME_NS = -(2**63)
MAX_MTIME_NS = 2**63 - 1
#: Pairs kept per project; older state files are removed when a new one is written.
MAX_FILES = 64
#: Records per pair (a larger tree is not persisted; ~40 bytes per record on disk).
MAX_ENTRIES = 1_000_000
#: A state file larger than this (compressed) is not read.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: One side's entries inflate to at most this (a whole tree in one listing, unlike the wire's
#: pieces: ~100 bytes per record, so MAX_ENTRIES records of long paths fit).
MAX_LISTING_BYTES = 256 * 1024 * 1024


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
            return self._parse(raw)
        except StateError:
            raise
        except (PodsyncError, zlib.error, ValueError, UnicodeDecodeError, TypeError) as exc:
            raise StateError(f"{self.path} is corrupt ({_short(exc)})") from None

    def _parse(self, raw: bytes) -> Saved:
        if not raw.startswith(MAGIC):
            raise StateError(f"{self.path} is not a podsync state file")
        parts = _split(raw[len(MAGIC) :], 3)
        doc = json.loads(parts[0].decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise StateError(f"{self.path} is not a podsync state file")
        if doc.get("version") != VERSION:
            raise StateError(f"{self.path} has format version {doc.get('version')!r}")
        if doc.get("key") != self.key.as_list():
            raise StateError(f"{self.path} belongs to another sync pair")
        local = _listing(parts[1], doc.get("lz"))
        remote = _listing(parts[2], doc.get("rz"))
        conflicts, remote_absent = (_paths(doc.get(k)) for k in ("conflicts", "remote_absent"))
        if len(local) + len(remote) > 2 * MAX_ENTRIES:
            raise StateError(f"{self.path} holds more than {MAX_ENTRIES} records")
        if not remote_absent <= local.keys():
            raise StateError(f"{self.path} is corrupt (an empty record)")
        # The container side of a record is stored only where it differs from the local
        # side (it mostly does not: one shared Entry then serves both sides in memory too).
        ancestor: Ancestor = {}
        get = remote.get
        for path, lo in local.items():
            re = None if path in remote_absent else get(path, lo)
            ancestor[path] = ancestor_entry(lo, re, path in conflicts)
        for path, re in remote.items():
            if path not in local:
                ancestor[path] = ancestor_entry(None, re, path in conflicts)
        if not conflicts <= ancestor.keys():
            raise StateError(f"{self.path} is corrupt (a conflict without a record)")
        fsid = doc.get("fsid")
        saved_at = doc.get("saved")
        return Saved(
            ancestor,
            fsid if isinstance(fsid, str) and len(fsid) <= 512 else None,
            _pair(doc.get("local_id")),
            float(saved_at) if isinstance(saved_at, (int, float)) else 0.0,
        )

    # -- writing ------------------------------------------------------------------------
    def save(
        self, ancestor: dict[Any, AncestorEntry], fsid: str | None, local_id: tuple[int, int] | None
    ) -> bool:
        """Write the state atomically (False when the tree is too large to keep). Blocking
        (~0.1 s per 100k records): run it in a thread for big trees."""
        if len(ancestor) > MAX_ENTRIES:
            self.forget()
            return False
        local = {p: a.local for p, a in ancestor.items() if a.local is not None}
        remote = {
            p: a.remote
            for p, a in ancestor.items()
            if a.remote is not None and (a.local is None or a.remote != a.local)
        }
        local_body, local_z = encode_listing(local)
        remote_body, remote_z = encode_listing(remote)
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "key": self.key.as_list(),
            "fsid": fsid,
            "local_id": list(local_id) if local_id else None,
            "saved": time.time(),
            "lz": local_z,
            "rz": remote_z,
            "conflicts": [p for p, a in ancestor.items() if a.conflict],
            "remote_absent": [p for p, a in ancestor.items() if a.remote is None],
        }
        header = json.dumps(doc, separators=(",", ":")).encode("ascii")
        data = MAGIC + b"".join(_LEN.pack(len(x)) + x for x in (header, local_body, remote_body))
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


def _split(data: bytes, count: int) -> list[bytes]:
    """``count`` length-prefixed parts, the whole of ``data``."""
    parts: list[bytes] = []
    at = 0
    for _ in range(count):
        if at + _LEN.size > len(data):
            raise ValueError("truncated")
        (size,) = _LEN.unpack_from(data, at)
        at += _LEN.size
        if at + size > len(data):
            raise ValueError("truncated")
        parts.append(data[at : at + size])
        at += size
    if at != len(data):
        raise ValueError("trailing bytes")
    return parts


def _paths(raw: Any) -> set[RelPath]:
    if not isinstance(raw, list):
        raise ValueError("a list of paths")
    return {relpath(p) for p in raw}


def _listing(body: bytes, compressed: Any) -> Snapshot:
    """One side's entries, validated as any listing from the other side is (paths, kinds,
    sizes), and mtimes within what the filesystem can be told."""
    if not isinstance(compressed, bool):
        raise ValueError("listing flag")
    snapshot = decode_listing(body, compressed, MAX_LISTING_BYTES)
    if any(not MIN_MTIME_NS <= e.mtime_ns <= MAX_MTIME_NS for e in snapshot.values()):
        raise ValueError("an mtime out of range")
    return snapshot


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

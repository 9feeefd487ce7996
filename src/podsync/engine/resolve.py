"""Resolving a recorded conflict as the user chose (``podsync conflicts resolve``).

Owns: :func:`resolve` (``keep="container"`` or ``"local"``) and the mtime a resolved file gets.
May import: the standard library, ``podsync.core``, ``podsync.replica``, ``podsync.errors``,
``podsync.engine.conflicts``.

It changes only the local folder and the conflict store, so it works the same whether a sync
runs or not: a running sync sees the local change like any edit and uploads it; a sync started
later finds a local file newer than the container's and uploads it too.

- ``container``: the saved container version is written in place of the local file (temp +
  rename, checked against the local file as it was just before, so an edit made meanwhile is
  never overwritten); the replaced local version goes to ``.devspace/trash/``.
- ``local``: the saved copies go to ``.devspace/trash/``. If the container may not hold the
  local version (an initial-sync conflict left both as they were), the local file's mtime is
  moved forward, which makes it a local edit the sync uploads.

Either way the resolved local file's mtime is at least 1 s past every mtime known for the
path, and past now: it is a new local edit, so it wins against the container's current copy
in the watch phase (a local change since the last agreed state), in a restart's initial sync
("local newer: upload", even at the shell agent's one-second clock) and in a resume from
saved state. When the container keeps the version the user decided about, the store
remembers that decision (``settle``), so the upload that replaces it is not a new conflict.
Nothing is lost: until a resolution completes, both versions exist (in place, or saved); a
failed resolution gives the record back unchanged.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from podsync.core.entry import FILE, Entry
from podsync.core.paths import relpath
from podsync.engine.conflicts import Claim, ConflictRecord, ConflictStore
from podsync.errors import PodsyncError
from podsync.replica import Replica, fsops
from podsync.replica.trash import Trash

Keep = Literal["local", "container"]
SECOND_NS = 1_000_000_000
CHUNK = 1 << 20


class ResolveError(PodsyncError):
    """A conflict could not be resolved now (its record stays open)."""


@dataclass(frozen=True)
class Resolution:
    record: ConflictRecord
    keep: Keep
    message: str


def fresh_mtime(record: ConflictRecord, current: Entry | None) -> int:
    """Now, or 1 s past the newest mtime known for the path if that is later."""
    known = [v.mtime_ns for v in (record.local, record.container) if v is not None]
    if current is not None and current.kind == FILE:
        known.append(current.mtime_ns)
    return max(time.time_ns(), max(known, default=0) + SECOND_NS)


def resolve(
    store: ConflictStore, record: ConflictRecord, keep: Keep, trash_dir: Path
) -> Resolution:
    """Resolve ``record`` (see the module docstring); raises :class:`ResolveError`."""
    claim = store.claim(record)
    if claim is None:
        raise ResolveError(f"{record.path}: already resolved (by another podsync?)")
    if claim.record.in_container:
        # Before the local file changes: a running sync may upload it within milliseconds,
        # and must then know that the container version it replaces is no new conflict.
        store.settle(claim.record)
    try:
        if keep == "container":
            message = _keep_container(claim.record, trash_dir)
        else:
            message = _keep_local(claim.record, trash_dir)
    except BaseException:
        store.unsettle(claim.record)
        store.give_back(claim)
        raise
    _finish(store, claim, trash_dir, used=keep == "container")
    return Resolution(claim.record, keep, message)


def _keep_container(record: ConflictRecord, trash_dir: Path) -> str:
    copies = record.copies()
    if not copies:
        raise ResolveError(
            f"{record.path}: the saved container version ({record.copy}) is gone; "
            "resolve it with --keep local"
        )
    source = copies[0]
    path = relpath(record.path)
    replica = Replica(record.root, trash_dir=str(trash_dir))
    current = replica.entry(path)
    with open(source, "rb") as handle:
        st = os.fstat(handle.fileno())
        entry = Entry(FILE, st.st_size, fresh_mtime(record, current), bool(st.st_mode & 0o111))
        writer = replica.begin_write(path, entry, current)
        try:
            for data in iter(lambda: handle.read(CHUNK), b""):
                writer.write(data)
        except BaseException:
            writer.abort()
            raise
    outcome = writer.commit()
    if not isinstance(outcome, Entry):
        raise ResolveError(f"{record.path}: not resolved: {outcome.message}")
    replaced = "" if current is None else f" (the local one is now in {_shown(trash_dir)})"
    return f"{record.path}: kept the container's version{replaced}"


def _keep_local(record: ConflictRecord, trash_dir: Path) -> str:
    path = relpath(record.path)
    current = Replica(record.root).entry(path)
    if current is None or current.kind != FILE:
        what = "the local deletion" if current is None else "the local version"
        return f"{record.path}: kept {what}"
    if record.local_in_container:
        return f"{record.path}: kept the local version (the container has it)"
    mtime = fresh_mtime(record, current)
    root_fd = fsops.open_root(record.root)
    try:
        dir_fd, name = fsops.walk_parent(root_fd, path, create=False)
    except (OSError, fsops.Refused) as exc:
        raise ResolveError(f"{record.path}: not resolved: {exc}") from None
    finally:
        os.close(root_fd)
    try:
        os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise ResolveError(f"{record.path}: not resolved: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    return f"{record.path}: kept the local version (the sync uploads it)"


def _shown(folder: Path) -> str:
    rel = os.path.relpath(folder)
    return str(folder) if rel.startswith("..") else rel + "/"


def _finish(store: ConflictStore, claim: Claim, trash_dir: Path, used: bool) -> None:
    """The saved copies leave the conflicts folder (the one now in place is dropped, the
    others go to the trash), and the record is gone."""
    record = claim.record
    copies = record.copies()
    for index, copy in enumerate(copies):
        if used and index == 0:
            with contextlib.suppress(FileNotFoundError):
                copy.unlink()
        else:
            _to_trash(copy, record.path, trash_dir)
        _drop_empty_parents(copy.parent, store.folder)
    store.finish(claim)


def _to_trash(copy: Path, path: str, trash_dir: Path) -> None:
    fd = os.open(copy.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        Trash(str(trash_dir)).preserve(fd, copy.name, relpath(path), move=True)
    finally:
        os.close(fd)


def _drop_empty_parents(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``top`` while empty."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent

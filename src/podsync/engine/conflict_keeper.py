"""The running sync's side of the conflict store: save container versions, record conflicts.

Owns: :class:`ConflictKeeper`, used by the executor for one plan at a time. May import:
``podsync.core``, ``podsync.replica`` (writing the saved copies), ``podsync.engine.conflicts``.

Every conflict the user can act on gets both versions at hand and one record:

- a container version about to be overwritten or deleted (``SaveConflictCopy``: a watch-phase
  conflict, or a local edit of a pair the initial sync left apart) is saved first, as before;
- an initial-sync conflict (the spec's "container newer: both left as they are", or any other
  pair of files left apart) changes nothing on either side, but the container's version is
  saved too, so ``podsync conflicts resolve --keep container`` works even when the container
  is gone or changed later. A later run that finds the same pair again reuses that copy.

A container version the user already decided about (a settled record) is neither saved nor
recorded again: after ``--keep local`` or ``--keep container`` the next upload of the path
replaces it without raising the same conflict a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from podsync.core.entry import FILE, Entry, Problem
from podsync.core.paths import RelPath
from podsync.core.plan import Conflict, SaveConflictCopy
from podsync.engine.conflicts import ConflictRecord, ConflictStore, Version, now_iso
from podsync.replica import Replica

#: Shown for a saved copy that no Conflict action explains (the pair the initial sync left
#: apart, edited locally afterwards).
REPLACED = "the container's version was replaced by the local one"
#: How a planner's reason says where the copy goes; the report names the copy itself.
SAVED_IN = "saved in .devspace/conflicts/"


def _version(entry: Entry | None) -> Version | None:
    return Version(entry.size, entry.mtime_ns) if entry is not None and entry.kind == FILE else None


class ConflictKeeper:
    """What one plan execution saved: each copy is recorded as soon as it is saved (so a
    copy never lies in the folder unlisted), and the record is completed by :meth:`finish`
    once the plan has run (what the container holds now)."""

    def __init__(self, store: ConflictStore) -> None:
        self.store = store
        #: path -> (container entry saved, where, when the conflict was first recorded)
        self._saved: dict[RelPath, tuple[Entry, str, str]] = {}
        self._reasons: dict[RelPath, str] = {}
        self._apart: list[Conflict] = []
        #: path -> why its container version could not be saved (it must not be overwritten)
        self.unsaved: dict[RelPath, str] = {}
        #: paths whose container version equals the local file (nothing to keep apart)
        self.same: set[RelPath] = set()
        #: path -> where its container version was saved by this plan
        self.copies: dict[RelPath, str] = {}

    async def save(
        self,
        root: str,
        remote: Any,
        local: Mapping[RelPath, Entry],
        wanted: Sequence[SaveConflictCopy],
        problems: list[Problem],
    ) -> None:
        """Save the container's version of each path, unless the user already decided about
        that version or an open record already holds a copy of it."""
        fetch: dict[RelPath, SaveConflictCopy] = {}
        for act in wanted:
            version = _version(act.entry)
            if version is None or self.store.take_settled(root, act.path, version):
                continue
            old = self.store.get(root, act.path)
            if old is not None and old.container == version and old.copy and _is_file(old.copy):
                self._saved[act.path] = (act.entry, old.copy, old.when)
            else:
                fetch[act.path] = act
        if not fetch:
            return
        try:
            folder = self.store.copy_folder()
        except OSError as exc:
            self._unsave(fetch, f"{_shown(str(self.store.folder))}: {exc.strerror or exc}")
            return
        keeper = Replica(str(folder))
        async for src in remote.read(list(fetch)):
            if src.entry.kind != FILE or src.path not in fetch:
                continue
            writer = keeper.begin_write(src.path, src.entry, None)
            digest = hashlib.sha256()
            try:
                async for data in src.chunks():
                    digest.update(data)
                    writer.write(data)
            except BaseException:
                writer.abort()
                raise
            act = fetch.pop(src.path)
            if await _same_as_local(root, src.path, local.get(src.path), src.entry, digest):
                writer.abort()
                self.same.add(src.path)
                continue
            outcome = writer.commit()
            if isinstance(outcome, Problem):
                self._unsave({src.path: act}, outcome.message)
                continue
            copy = str(folder.joinpath(*src.path.split("/")))
            self._saved[src.path] = (src.entry, copy, now_iso())
            self.copies[src.path] = copy
            reason = self._reasons.get(src.path, act.reason or REPLACED)
            self._put(root, src.path, local.get(src.path), reason, problems, in_container=True)
        # Not read back (gone or changed meanwhile): not saved, so not to be overwritten.
        self._unsave(fetch, "the container's version could not be read")
        with contextlib.suppress(OSError):
            folder.rmdir()  # nothing saved in it after all

    def _unsave(self, paths: Iterable[RelPath], why: str) -> None:
        for path in paths:
            self.unsaved[path] = why

    def start(self) -> None:
        """Forget what the previous plan saved or could not save."""
        self.unsaved, self.same, self.copies = {}, set(), {}

    def reported(
        self,
        conflicts: list[Conflict],
        local: Mapping[RelPath, Entry],
        container: Mapping[RelPath, Entry],
    ) -> list[Conflict]:
        """``conflicts`` as the user is told about them, once the plan has run: a pair with
        the same bytes on both sides is none; each line says where the container's version
        was saved, or why it was not (and that nothing was overwritten)."""
        out: list[Conflict] = []
        seen: set[RelPath] = set()
        for conflict in conflicts:
            seen.add(conflict.path)
            if conflict.path in self.same:
                continue
            out.append(replace(conflict, reason=self._told(conflict.path, conflict.reason)))
        for path in [*self.copies, *self.unsaved]:
            if path not in seen and path not in self.same:
                seen.add(path)
                told = self._told(path, REPLACED)
                out.append(Conflict(path, local.get(path), container.get(path), told))
        return out

    def _told(self, path: RelPath, reason: str) -> str:
        if path in self.unsaved:  # only what happened: the first clause, then why not more
            return (
                f"{reason.split(';')[0]}; the container's version could not be saved "
                f"({self.unsaved[path]}), so neither side was changed"
            )
        if path in self.copies:
            where = f"saved as {_shown(self.copies[path])}"
            if SAVED_IN in reason:
                return reason.replace(SAVED_IN, where)
            return f"{reason}; the container's version is {where}"
        return reason

    def note(self, conflicts: Iterable[Conflict]) -> None:
        """Remember why each path conflicts; pairs of files left apart get saved in finish."""
        for conflict in conflicts:
            self._reasons[conflict.path] = conflict.reason
            if not conflict.resolved and _version(conflict.local) and _version(conflict.remote):
                self._apart.append(conflict)

    async def finish(
        self,
        root: str,
        remote: Any,
        local: Mapping[RelPath, Entry],
        container: Mapping[RelPath, Entry],
        sent: Iterable[RelPath],
        problems: list[Problem],
    ) -> None:
        """Save the versions of pairs left apart, then complete the record of every path
        saved (unless the user resolved it meanwhile). ``sent``: paths whose local state the
        container now holds (uploaded, or deleted there)."""
        try:
            apart = [
                SaveConflictCopy(c.path, c.remote, c.reason)
                for c in self._apart
                if c.remote and c.path not in self.unsaved
            ]
            if apart:
                await self.save(root, remote, local, apart, problems)
            done = set(sent)
            for path, (entry, _, _) in self._saved.items():
                if self.store.get(root, path) is None:
                    continue  # resolved by the user already
                now = container.get(path)
                self._put(
                    root,
                    path,
                    local.get(path),
                    self._reasons.get(path, REPLACED),
                    problems,
                    in_container=now is not None and _version(now) == _version(entry),
                    local_in_container=path in done,
                )
        finally:
            self._saved, self._reasons, self._apart = {}, {}, []

    def _put(
        self,
        root: str,
        path: RelPath,
        local: Entry | None,
        reason: str,
        problems: list[Problem],
        *,
        in_container: bool,
        local_in_container: bool = False,
    ) -> None:
        entry, copy, when = self._saved[path]
        record = ConflictRecord(
            root=root,
            path=path,
            when=when,
            reason=reason,
            local=_version(local),
            container=_version(entry),
            copy=copy,
            in_container=in_container,
            local_in_container=local_in_container,
        )
        try:
            self.store.put(record)
        except OSError as exc:  # the copy is saved; only its listing failed
            problems.append(Problem(path, f"could not record the conflict: {exc.strerror}"))


async def _same_as_local(
    root: str, path: RelPath, local: Entry | None, container: Entry, digest: Any
) -> bool:
    """Does the local file hold the same bytes as the container's version just read?"""
    if local is None or local.kind != FILE or local.size != container.size:
        return False
    mine = await asyncio.to_thread(_sha256, os.path.join(root, *path.split("/")))
    return mine is not None and mine == digest.digest()


def _sha256(name: str) -> bytes | None:
    digest = hashlib.sha256()
    try:
        with open(name, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.digest()


def _shown(copy: str) -> str:
    """``copy`` relative to the working folder when it lies below it (shorter to read)."""
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(copy)
        if not rel.startswith(os.pardir):
            return rel
    return copy


def _is_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)

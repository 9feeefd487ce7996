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

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from podsync.core.entry import FILE, Entry, Problem
from podsync.core.paths import RelPath
from podsync.core.plan import Conflict, SaveConflictCopy
from podsync.engine.conflicts import ConflictRecord, ConflictStore, Version, now_iso
from podsync.replica import Replica

#: Shown for a saved copy that no Conflict action explains (the pair the initial sync left
#: apart, edited locally afterwards).
REPLACED = "the container's version was replaced by the local one"


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
        folder = self.store.copy_folder()
        keeper = Replica(str(folder))
        async for src in remote.read(list(fetch)):
            if src.entry.kind != FILE or src.path not in fetch:
                continue
            writer = keeper.begin_write(src.path, src.entry, None)
            try:
                async for data in src.chunks():
                    writer.write(data)
            except BaseException:
                writer.abort()
                raise
            outcome = writer.commit()
            if isinstance(outcome, Problem):
                problems.append(outcome)
                continue
            copy = str(folder.joinpath(*src.path.split("/")))
            self._saved[src.path] = (src.entry, copy, now_iso())
            reason = self._reasons.get(src.path, fetch[src.path].reason or REPLACED)
            self._put(root, src.path, local.get(src.path), reason, problems, in_container=True)

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
            apart = [SaveConflictCopy(c.path, c.remote, c.reason) for c in self._apart if c.remote]
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


def _is_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)

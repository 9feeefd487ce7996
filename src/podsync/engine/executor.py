"""Carry out a Plan against the two endpoints and keep the ancestor true.

Owns: batching consecutive actions into streams, updating the last agreed state from what
was really written, and counting what moved. May import: ``podsync.core``,
``podsync.engine.endpoint``, ``podsync.engine.conflict_keeper`` (conflict copies and records).

The planners decide; this module never does. Each written path's ancestor becomes
(entry the source had when it was read, entry the target reports after the write), so an
echo of our own write compares equal on the next scan and nothing moves twice.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from podsync.core.entry import FILE, Entry, Problem, Snapshot
from podsync.core.paths import RelPath, is_within
from podsync.core.plan import (
    Action,
    Agree,
    Ancestor,
    AncestorEntry,
    Conflict,
    DeleteLocal,
    DeleteRemote,
    Download,
    Keep,
    Plan,
    SaveConflictCopy,
    Upload,
    ancestor_entry,
)
from podsync.engine.conflict_keeper import ConflictKeeper
from podsync.engine.conflicts import ConflictStore
from podsync.engine.endpoint import DeleteItem, FileItem, WriteResult


class Chunks:
    """Async iterator over a source file's chunks that remembers whether the file changed
    while it was read (the target then discards the copy instead of committing it)."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self._it = source.chunks().__aiter__()
        self.changed = False
        self.bytes = 0

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            data: bytes = await self._it.__anext__()
        except StopAsyncIteration:
            self.changed = bool(getattr(self._source, "changed", False))
            raise
        self.bytes += len(data)
        return data


@dataclass
class Totals:
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    deleted_remote: int = 0
    deleted_local: int = 0


@dataclass
class Outcome:
    """What one plan execution did."""

    uploaded: list[RelPath] = field(default_factory=list)
    downloaded: list[RelPath] = field(default_factory=list)
    deleted_remote: list[RelPath] = field(default_factory=list)
    deleted_local: list[RelPath] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0
    seconds: float = 0.0


class Executor:
    def __init__(
        self,
        local: Any,
        remote: Any,
        ancestor: Ancestor,
        local_cache: Snapshot,
        remote_cache: Snapshot,
        conflicts_dir: Path,
        *,
        on_progress: Callable[[int, int], None] = lambda files, nbytes: None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.ancestor = ancestor
        self.L = local_cache
        self.R = remote_cache
        self.conflicts_dir = conflicts_dir
        self.keeper = ConflictKeeper(ConflictStore(conflicts_dir))
        self.totals = Totals()
        self.on_progress = on_progress

    async def run(self, plan: Plan) -> Outcome:
        started = time.monotonic()
        out = Outcome()
        self.keeper.start()
        for kind, group in itertools.groupby(plan.actions, key=type):
            actions = list(group)
            if kind in (Upload, DeleteRemote) and self.keeper.unsaved:
                # The container's version could not be saved first: it must not be lost.
                actions = [a for a in actions if a.path not in self.keeper.unsaved]
            if kind is Upload:
                await self._upload(actions, out)
            elif kind is Download:
                await self._download(actions, out)
            elif kind is DeleteRemote:
                await self._delete(actions, out, remote=True)
            elif kind is DeleteLocal:
                await self._delete(actions, out, remote=False)
            elif kind is SaveConflictCopy:
                copies = cast(list[SaveConflictCopy], actions)
                await self.keeper.save(self._root(), self.remote, self.L, copies, out.problems)
            elif kind is Agree:
                self._agree(actions)
            else:
                for action in actions:
                    self._note(action, out)
        self.keeper.note(out.conflicts)
        sent = out.uploaded + out.deleted_remote
        await self.keeper.finish(self._root(), self.remote, self.L, self.R, sent, out.problems)
        for conflict in out.conflicts:
            if conflict.path in self.keeper.same and not conflict.resolved:
                self._record(conflict.path, conflict.local, conflict.remote, False)
        out.conflicts = self.keeper.reported(out.conflicts, self.L, self.R)
        out.seconds = time.monotonic() - started
        return out

    def _root(self) -> str:
        """The local sync folder, as conflict records and ``status sync`` name it."""
        return str(self.local.root)

    def _note(self, action: Action, out: Outcome) -> None:
        if isinstance(action, (Agree, Keep)):
            self._record(action.path, action.local, action.remote, False)
        elif isinstance(action, Conflict):
            if action.path in self.keeper.unsaved:  # its overwrite did not happen
                action = replace(action, resolved=False)
            out.conflicts.append(action)
            if not action.resolved:
                self._record(action.path, action.local, action.remote, True)

    def _agree(self, actions: Sequence[Any]) -> None:
        """Record agreed pairs (a no-op sync of a big tree is nothing else: one tight loop)."""
        ancestor = self.ancestor
        for act in actions:
            if act.local is None and act.remote is None:
                self._record(act.path, None, None, False)
            else:
                ancestor[act.path] = ancestor_entry(act.local, act.remote)

    def _record(
        self, path: RelPath, local: Entry | None, remote: Entry | None, conflict: bool
    ) -> None:
        if local is None and remote is None:
            for known in [p for p in self.ancestor if is_within(p, path)]:
                del self.ancestor[known]
        else:
            self.ancestor[path] = AncestorEntry(local, remote, conflict)

    # -- transfers ----------------------------------------------------------------------
    async def _transfer(
        self, source: Any, target: Any, actions: Sequence[Upload | Download]
    ) -> tuple[WriteResult, dict[RelPath, Entry], int]:
        wanted = {a.path: a for a in actions}
        sent: dict[RelPath, Entry] = {}
        counter = [0]

        async def items() -> AsyncIterator[FileItem]:
            async for src in source.read([a.path for a in actions]):
                action = wanted.get(src.path)
                if action is None:
                    continue
                sent[src.path] = src.entry
                chunks = Chunks(src) if src.entry.kind == FILE else None
                yield FileItem(src.path, src.entry, action.expect, chunks)
                if chunks is not None:
                    counter[0] += src.entry.size
                self.on_progress(1, src.entry.size if src.entry.kind == FILE else 0)

        result = await target.write(items())
        return result, sent, counter[0]

    async def _upload(self, actions: list[Any], out: Outcome) -> None:
        result, sent, nbytes = await self._transfer(self.local, self.remote, actions)
        out.problems.extend(self.local.read_problems)
        self.local.read_problems.clear()
        out.problems.extend(result.problems)
        for path, entry in result.written.items():
            if entry is None or path not in sent:
                continue
            self.ancestor[path] = AncestorEntry(sent[path], entry, False)
            self.L[path] = sent[path]
            self.R[path] = entry
            out.uploaded.append(path)
            if entry.kind == FILE:
                self.totals.uploaded_files += 1
        self.totals.uploaded_bytes += nbytes
        out.bytes_up += nbytes

    async def _download(self, actions: list[Any], out: Outcome) -> None:
        result, sent, nbytes = await self._transfer(self.remote, self.local, actions)
        out.problems.extend(self.remote.read_problems)
        self.remote.read_problems.clear()
        out.problems.extend(result.problems)
        for path, entry in result.written.items():
            if entry is None or path not in sent:
                continue
            self.ancestor[path] = AncestorEntry(entry, sent[path], False)
            self.L[path] = entry
            self.R[path] = sent[path]
            out.downloaded.append(path)
            if entry.kind == FILE:
                self.totals.downloaded_files += 1
        self.totals.downloaded_bytes += nbytes
        out.bytes_down += nbytes

    async def _delete(self, actions: list[Any], out: Outcome, *, remote: bool) -> None:
        target = self.remote if remote else self.local
        result = await target.delete([DeleteItem(a.path, a.expect) for a in actions])
        out.problems.extend(result.problems)
        cache = self.R if remote else self.L
        for path in result.written:
            for known in [p for p in cache if is_within(p, path)]:
                del cache[known]
            for known in [p for p in self.ancestor if is_within(p, path)]:
                del self.ancestor[known]
            if remote:
                out.deleted_remote.append(path)
                self.totals.deleted_remote += 1
            else:
                out.deleted_local.append(path)
                self.totals.deleted_local += 1

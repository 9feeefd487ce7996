"""One side of a sync pair, as the engine sees it.

Owns: the :class:`Endpoint` protocol and the value types crossing it. May import: the
standard library, ``podsync.core`` and ``podsync.errors``.

Implementations: ``LocalEndpoint`` (a folder on this machine, through ``podsync.replica``),
``AgentEndpoint`` (the Python agent over the wire protocol) and ``ShellEndpoint`` (POSIX sh +
tar over separate exec calls, for containers without Python). The engine decides; endpoints
only observe and execute, and every write they do is atomic (temp file + rename) and guarded
by an expectation of what is there now, so a path edited since the scan is left alone and
reported as a :class:`Problem` instead of being overwritten.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from podsync.core.entry import ANY, Entry, Expect, Problem, Snapshot
from podsync.core.paths import RelPath

__all__ = [
    "ANY",
    "DeleteItem",
    "Endpoint",
    "Expect",
    "FileItem",
    "Problem",
    "SourceFile",
    "WriteResult",
]


@dataclass(frozen=True)
class FileItem:
    """One path to create/replace on the target side.

    ``entry`` is the source's entry (kind, size, mtime, exec bit, link target); for files the
    content follows in ``chunks``. The target sets mtime and exec bit from ``entry``.
    """

    path: RelPath
    entry: Entry
    expect: Expect
    chunks: AsyncIterator[bytes] | None = None


@dataclass(frozen=True)
class DeleteItem:
    """One path to remove (a directory with everything below it) if it still matches."""

    path: RelPath
    expect: Expect


@dataclass(frozen=True)
class WriteResult:
    """What a batch of writes did: the entries now on disk for paths written (as the target
    side's own scan would report them, so echoes of our own writes compare equal), and the
    problems of paths left alone."""

    written: dict[RelPath, Entry | None]
    problems: list[Problem]


class SourceFile(Protocol):
    """A file being read from an endpoint: its entry at open time and its content."""

    path: RelPath
    entry: Entry

    def chunks(self) -> AsyncIterator[bytes]: ...


class Endpoint(Protocol):
    """One folder on one side."""

    #: "local" or "container"; used in logs and status.
    side: str
    #: Which implementation talks to that side and why (status/log), e.g.
    #: "python agent (python3 3.11 found)" or "shell agent (no python3 in the container)".
    agent_description: str
    #: Clock granularity of the mtimes this side reports (1 for ns, 10**9 for seconds).
    mtime_granularity_ns: int

    async def scan(self, under: Sequence[RelPath] = ()) -> Snapshot:
        """Entries of the tree, honouring the scan-prune rules (excluded directories are not
        entered). With ``under``, only those subtrees: each given path's own entry (if it
        exists) and all its descendants. Raises SafetyHalt if the root itself is gone."""
        ...

    async def digests(self, paths: Sequence[RelPath]) -> dict[RelPath, str | None]:
        """Hex SHA-256 of each file's content (None: not a regular file any more)."""
        ...

    def read(self, paths: Sequence[RelPath]) -> AsyncIterator[SourceFile]:
        """Stream files (and dirs/links, which have no content) in the given order; paths that
        vanished are skipped. Each SourceFile's chunks must be consumed before the next one is
        requested."""
        ...

    async def write(self, items: AsyncIterator[FileItem]) -> WriteResult:
        """Create or atomically replace each item (parents are created as needed)."""
        ...

    async def delete(self, items: Sequence[DeleteItem]) -> WriteResult:
        """Remove each path whose current state matches the expectation. The local endpoint
        moves what it removes or replaces into ``.devspace/trash/``."""
        ...

    async def hints(self) -> list[RelPath]:
        """Wait for change hints from the watcher and return those gathered (debounced).
        ``""`` (the root) means "rescan everything" (e.g. after an inotify overflow)."""
        ...

    async def close(self) -> None:
        """Stop watching and release the other side (the agent process exits)."""
        ...

"""What the shell agent believes the container's tree looks like, for change detection.

Owns: :class:`Baseline` (path -> metadata signature) and the diff that turns poll listings
into hinted paths. May import: the standard library, ``podsync.core``,
``engine.shell.listing``. Pure: no I/O.

Three sources move it: full scans (the engine's truth), our own writes and deletes (so a
change that lands and is undone between two polls, e.g. our upload followed by a user's
``rm``, still differs from the next look), and the poll loop. The loop only sends a listing
when the tree changed; an unchanged turn ("tick") means "still as in the last listing", so
a baseline moved by us since then is compared with that listing again.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from podsync.core.entry import Snapshot
from podsync.core.paths import RelPath, ancestors
from podsync.engine.shell.listing import Record, record_path

Signatures = dict[RelPath, tuple[object, ...]]


def signatures(records: Iterable[Record], keep: Container[RelPath]) -> Signatures:
    """Signatures of the records whose path is in ``keep``."""
    out: Signatures = {}
    for record in records:
        path, _ = record_path(record)
        if path and path in keep:
            out[path] = record.signature()
    return out


def below(path: RelPath, roots: set[RelPath]) -> bool:
    """True when a proper ancestor of ``path`` is in ``roots``."""
    return any(a in roots for a in ancestors(path))


def minimal(paths: Iterable[RelPath]) -> list[RelPath]:
    """Drop paths lying below another given path (O(paths x depth))."""
    unique = set(paths)
    if RelPath("") in unique:
        return [RelPath("")]
    return sorted(p for p in unique if not below(p, unique))


class Baseline:
    """The believed tree; each method returning a list gives the paths to hint."""

    def __init__(self) -> None:
        self._known: Signatures | None = None  # None: nothing scanned or polled yet
        self._seen: Signatures | None = None  # the poll loop's last listing
        self._dirty = False  # _known moved since that listing

    def scanned(self, records: Iterable[Record], snapshot: Snapshot) -> None:
        """A full scan: it replaces everything believed."""
        self._known = signatures(records, snapshot)
        self._dirty = True

    def note(self, records: Iterable[Record], paths: Container[RelPath]) -> None:
        """Fresh records of ``paths`` (a partial scan, our writes)."""
        if self._known is None:
            return
        fresh = signatures(records, paths)
        if fresh:
            self._known.update(fresh)
            self._dirty = True

    def forget(self, paths: Iterable[RelPath]) -> None:
        """``paths`` (and what was below them) were deleted by us."""
        gone = set(paths)
        if self._known is None or not gone:
            return
        self._known = {p: s for p, s in self._known.items() if p not in gone and not below(p, gone)}
        self._dirty = True

    def listing(self, now: Signatures) -> list[RelPath]:
        """The poll loop sent a changed listing."""
        self._seen = now
        return self._compare(now)

    def tick(self) -> list[RelPath]:
        """The poll loop found the tree as in its last listing."""
        if self._dirty and self._seen is not None:
            return self._compare(self._seen)
        return []

    def _compare(self, now: Signatures) -> list[RelPath]:
        before, self._known = self._known, dict(now)
        self._dirty = False
        if before is None:
            return []
        return minimal(p for p in now.keys() | before.keys() if now.get(p) != before.get(p))

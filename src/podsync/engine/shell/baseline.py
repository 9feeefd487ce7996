"""What the shell agent believes the container's tree looks like, for change detection.

Owns: :class:`Baseline` (path -> metadata signature) and the diff that turns poll listings
into hinted paths. May import: the standard library, ``podsync.core``,
``engine.shell.listing``. Pure: no I/O.

Three sources move it: full scans (the engine's truth), our own writes and deletes (so a
change that lands and is undone between two polls, e.g. our upload followed by a user's
``rm``, still differs from the next look), and the poll loop. The loop sends either a full
listing or a partial one: the recently changed paths and the complete children of the
changed directories (a child the baseline has there but the listing lacks was deleted or
renamed away). It only sends what differs from its previous turn; an unchanged turn
("tick") means "still as in the last listing", so a baseline moved by us since then is
compared with that listing again, over the part of the tree that listing covers.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from podsync.core.entry import DIR, Snapshot
from podsync.core.paths import RelPath, ancestors, parent
from podsync.engine.shell.listing import Prune, Record, record_path, to_snapshot

Signatures = dict[RelPath, tuple[object, ...]]


def signatures(records: Iterable[Record], keep: Container[RelPath]) -> Signatures:
    """Signatures of the records whose path is in ``keep``."""
    out: Signatures = {}
    for record in records:
        path, _ = record_path(record)
        if path and path in keep:
            out[path] = record.signature()
    return out


def partial_signatures(
    covered: Iterable[Record], changed: Iterable[Record], children: Iterable[Record], prune: Prune
) -> tuple[set[RelPath], Signatures]:
    """(the synced directories of ``covered``, whose children are all in ``children``; the
    signatures of every listed path that is synced) from a partial listing: paths excluded
    by the rules, or lying below an excluded directory not in this listing, are dropped."""
    covered = list(covered)
    records = [*covered, *changed, *children]
    snapshot = to_snapshot(records, prune, lambda message: None)
    synced = {p for p in snapshot if not any(prune(a, True) for a in ancestors(p))}
    dirs = set()
    for record in covered:
        path, _ = record_path(record)
        if record.kind == DIR and path is not None and (path == "" or path in synced):
            dirs.add(path)
    return dirs, signatures(records, synced)


def dir_times(records: Iterable[Record]) -> dict[RelPath, tuple[int, int]]:
    """(mode, mtime) of each directory record."""
    out = {}
    for record in records:
        if record.kind == DIR:
            path, _ = record_path(record)
            if path is not None:
                out[path] = (record.mode, record.mtime_ns)
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
        self._covers: set[RelPath] | None = None  # its complete directories; None: all
        self._dirs: dict[RelPath, tuple[int, int]] = {}  # (mode, mtime) of folders as listed
        self._window: set[RelPath] = set()  # the folders of the last partial listing
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

    def listing(self, now: Signatures, records: Iterable[Record] = ()) -> list[RelPath]:
        """The poll loop sent a full listing (``records``: its raw records)."""
        self._seen, self._covers = now, None
        self._dirs = dir_times(records)
        # as listed (the root too, which a full listing leaves out): only a new mode or
        # mtime counts next
        self._window = {RelPath(""), *self._dirs}
        return self._compare(now)

    def changes(
        self, covered: list[Record], changed: list[Record], kids: list[Record], prune: Prune
    ) -> list[RelPath]:
        """The poll loop sent a partial listing: folders whose entries changed (``covered``,
        with all their children in ``kids``) and other recently changed paths. A folder in
        ``changed`` that was not in the previous partial listing (it just changed), or whose
        mode or mtime differs from its last listing, is hinted whole: its entries may have
        changed with its mtime set back (``rsync -a``, ``tar x``)."""
        dirs, now = partial_signatures(covered, changed, kids, prune)
        window = dir_times(changed)
        moved = [
            p
            for p, meta in window.items()
            if (p in now or p == "")
            and p not in dirs
            and (p not in self._window or self._dirs.get(p, meta) != meta)
        ]
        self._dirs.update(dir_times([*covered, *changed, *kids]))
        self._window = dirs | window.keys()
        self._seen, self._covers = now, dirs
        return minimal([*self._compare_part(dirs, now), *moved])

    def tick(self) -> list[RelPath]:
        """The poll loop found the tree as in its last listing."""
        if self._dirty and self._seen is not None:
            if self._covers is not None:
                return self._compare_part(self._covers, self._seen)
            return self._compare(self._seen)
        return []

    def _compare_part(self, dirs: set[RelPath], now: Signatures) -> list[RelPath]:
        known = self._known
        self._dirty = False
        if known is None:
            return []
        differ = [p for p, s in now.items() if known.get(p) != s]
        known.update((p, now[p]) for p in differ)
        gone = {p for p in known if p not in now and parent(p) in dirs} if dirs else set()
        if gone:
            self._known = {p: s for p, s in known.items() if p not in gone and not below(p, gone)}
        return minimal([*differ, *gone])

    def _compare(self, now: Signatures) -> list[RelPath]:
        before, self._known = self._known, dict(now)
        self._dirty = False
        if before is None:
            return []
        return minimal(p for p in now.keys() | before.keys() if now.get(p) != before.get(p))

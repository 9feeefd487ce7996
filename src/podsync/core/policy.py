"""What the planners may do at a path: :class:`Policy` (exclude rules plus the sync's
direction mode), :class:`PathIndex` (subtree queries over snapshots) and :func:`same`.

Owns: the questions both planners (``core.initial``, ``core.reconcile``) ask before they
emit an action. May import: the standard library, ``core.paths`` and ``core.entry``; no I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Protocol, Set

from podsync.core.entry import DIR, Entry
from podsync.core.paths import ROOT, RelPath, parent


class ExcludeRules(Protocol):
    """The questions planners ask of ``podsync.core.excludes.Rules`` (git semantics,
    excluded parents included)."""

    def excluded(self, path: RelPath, is_dir: bool) -> bool: ...

    def blocks_upload(self, path: RelPath, is_dir: bool) -> bool: ...

    def blocks_download(self, path: RelPath, is_dir: bool) -> bool: ...


class PathIndex:
    """Sorted union of the paths of several maps, for subtree and children queries.

    Built lazily on the first query, so a planner handling one changed file never pays for
    sorting the whole tree.
    """

    def __init__(self, *maps: Mapping[RelPath, object]) -> None:
        self._maps = maps
        self._sorted: Optional[List[RelPath]] = None
        self._children: Optional[Dict[RelPath, List[RelPath]]] = None

    def _keys(self) -> List[RelPath]:
        if self._sorted is None:
            keys: Set[RelPath] = set()
            for m in self._maps:
                keys.update(m)
            keys.discard(ROOT)
            self._sorted = sorted(keys)
        return self._sorted

    def below(self, path: RelPath) -> List[RelPath]:
        """Proper descendants of ``path``, each after its parent (sorted)."""
        keys = self._keys()
        if path == ROOT:
            return list(keys)
        # Every string starting with "p/" sorts in ["p/", "p0"): '0' follows '/' in ASCII.
        lo = bisect_left(keys, path + "/")
        hi = bisect_left(keys, path + "0", lo)
        return keys[lo:hi]

    def children(self, path: RelPath) -> List[RelPath]:
        """Direct children of ``path``; a path whose parent is in no map (an inconsistent
        snapshot) counts as a child of its nearest listed ancestor, or of the root."""
        if self._children is None:
            keys = self._keys()
            present = set(keys)
            kids: Dict[RelPath, List[RelPath]] = {}
            for key in keys:
                up = parent(key)
                while up != ROOT and up not in present:
                    up = parent(up)
                kids.setdefault(up, []).append(key)
            self._children = kids
        return self._children.get(path, [])


@dataclass(frozen=True)
class Policy:
    """Which directions a path may move in: the exclude rules plus the sync's mode.

    Questions take every entry known at the path (either side, the ancestor) and answer
    conservatively: a path is excluded or blocked when the rules say so for any of the kinds
    found there (``logs/`` excludes a directory ``logs`` but not a file ``logs``; when one side
    has each, the path is left alone).
    """

    rules: ExcludeRules
    upload_only: bool = False
    download_only: bool = False

    def __post_init__(self) -> None:
        if self.upload_only and self.download_only:
            raise ValueError("upload_only and download_only cannot both be set")

    @staticmethod
    def _dirness(entries: Iterable[Optional[Entry]]) -> Set[bool]:
        kinds = {e.kind == DIR for e in entries if e is not None}
        return kinds or {False}

    def excluded(self, path: RelPath, *entries: Optional[Entry]) -> bool:
        return any(self.rules.excluded(path, d) for d in self._dirness(entries))

    def can_upload(self, path: RelPath, *entries: Optional[Entry]) -> bool:
        """May the container's ``path`` be created, replaced or deleted by sync?"""
        if self.download_only:
            return False
        return not any(
            self.rules.excluded(path, d) or self.rules.blocks_upload(path, d)
            for d in self._dirness(entries)
        )

    def can_download(self, path: RelPath, *entries: Optional[Entry]) -> bool:
        """May the local ``path`` be created, replaced or deleted by sync?"""
        if self.upload_only:
            return False
        return not any(
            self.rules.excluded(path, d) or self.rules.blocks_download(path, d)
            for d in self._dirness(entries)
        )


def same(a: Optional[Entry], b: Optional[Entry], granularity_ns: int = 1) -> bool:
    """Entries equal in content (both absent counts as equal)."""
    if a is None:
        return b is None
    return a.same_content(b, granularity_ns)

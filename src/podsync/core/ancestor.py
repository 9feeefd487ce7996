"""The last agreed state of a sync pair: what each side had at each path when last settled.

Owns: :class:`AncestorEntry`, :data:`Ancestor`, :func:`ancestor_entry` and
:func:`adopt_finer_mtimes`. How executed
actions advance it is ``core.plan``'s (:func:`~podsync.core.plan.advance_ancestor`); how it
is stored is the engine's. May import: the standard library and ``core.paths``,
``core.entry``; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from podsync.core.entry import FILE, Entry, _new, _set, slotted
from podsync.core.paths import RelPath


@slotted
@dataclass(frozen=True)
class AncestorEntry:
    """What each side had at one path when the pair was last settled.

    Each side keeps its *own* entry, so mtime precision differences between the sides never
    read as changes: a side changed when its entry differs from its own recorded one.
    ``None`` means that side had nothing there (only for the ``Keep`` and unresolved
    ``Conflict`` records of ``core.plan``). ``conflict=True`` marks a pair left different on
    purpose (initial sync: the container's copy was newer); the next local edit of it saves
    the container's version as a conflict copy before overwriting it.
    """

    local: Optional[Entry]
    remote: Optional[Entry]
    conflict: bool = False


#: The last agreed state of a sync pair.
Ancestor = Dict[RelPath, AncestorEntry]


def ancestor_entry(
    local: Optional[Entry], remote: Optional[Entry], conflict: bool = False
) -> AncestorEntry:
    """``AncestorEntry(local, remote, conflict)`` without the frozen dataclass's ``__init__``
    (a 10k-path sync builds one per path)."""
    pair: AncestorEntry = _new(AncestorEntry)
    _set(pair, "local", local)
    _set(pair, "remote", remote)
    _set(pair, "conflict", conflict)
    return pair


def adopt_finer_mtimes(ancestor: Ancestor, remote: Dict[RelPath, Entry]) -> int:
    """Give the container side of ``ancestor`` the nanoseconds ``remote`` lists where its
    recorded file has whole seconds and the listed one is that file to the second (same
    size, exec bit and second): the record was written when the shell agent read whole
    seconds only, and without this every such file would read as changed in the container
    at the first resume after the upgrade (downloaded again, a local deletion undone). A
    record of this version has whole seconds only where the file has them, for a file we
    uploaded: its second is the local file's, before the upload, so no later write in the
    container can fall in it. Returns how many records changed."""
    changed = 0
    for path, pair in ancestor.items():
        old = pair.remote
        if old is None or old.kind != FILE or old.mtime_ns % 10**9:
            continue
        now = remote.get(path)
        if (
            now is not None
            and now.kind == FILE
            and now.mtime_ns % 10**9
            and now.mtime_ns // 10**9 == old.mtime_ns // 10**9
            and now.size == old.size
            and now.executable == old.executable
        ):
            ancestor[path] = ancestor_entry(pair.local, now, pair.conflict)
            changed += 1
    return changed

"""What the sync engine is asked to do: actions, a :class:`Plan`, and the last agreed state.

Owns: the action value types both planners (``core.initial``, ``core.reconcile``) return,
the order a plan is executed in, and how a successfully executed plan advances the
:data:`Ancestor` (its value types live in ``core.ancestor`` and are re-exported here, where
the engine imports them; what may be done at a path: ``core.policy``). May import: the
standard library, ``core.paths``, ``core.entry`` and ``core.ancestor``; no I/O.

Execution contract for the engine: run the actions in plan order; consecutive actions of
the same type may be batched. ``Plan.of`` orders them in stages: conflict copies first (they
read what is about to be overwritten), then deletions (children before parents; a deletion
below a deleted directory is dropped as redundant), then uploads/downloads (parents before
children), then the records (:class:`Conflict`, :class:`Keep`, :class:`Agree`), which do no
I/O and only update the ancestor. A path whose kind changes to or from a directory is written
as a deletion followed by a creation with ``expect=None``, so no endpoint has to replace a
directory in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import (
    AbstractSet,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    Type,
    Union,
)

# Re-exported: the engine (executor, firstpass, session, watch) imports these from here.
from podsync.core.ancestor import Ancestor as Ancestor
from podsync.core.ancestor import AncestorEntry as AncestorEntry
from podsync.core.ancestor import ancestor_entry as ancestor_entry
from podsync.core.entry import DIR, LINK, Entry, Expect, _new, _set, slotted
from podsync.core.paths import RelPath, ancestors


@dataclass(frozen=True)
class Upload:
    """Create or replace the container's ``path`` with the local ``entry`` (file, dir, link).
    ``expect`` is what we believe the container has there now."""

    path: RelPath
    entry: Entry
    expect: Expect
    reason: str = ""


@dataclass(frozen=True)
class Download:
    """Create or replace the local ``path`` with the container's ``entry``; what it replaces
    goes to the local trash."""

    path: RelPath
    entry: Entry
    expect: Expect
    reason: str = ""


@dataclass(frozen=True)
class DeleteRemote:
    """Remove the container's ``path`` (a directory with everything below it).

    Scans do not list excluded paths, so the planner cannot see excluded content inside a
    directory: the endpoint must leave such content in place (and the directory holding it).
    """

    path: RelPath
    expect: Expect
    reason: str = ""


@dataclass(frozen=True)
class DeleteLocal:
    """Remove the local ``path`` (moved to the local trash); excluded content inside a
    directory stays, as for :class:`DeleteRemote`."""

    path: RelPath
    expect: Expect
    reason: str = ""


@dataclass(frozen=True)
class SaveConflictCopy:
    """Before the container's ``path`` (``entry``, a file or link) is overwritten or deleted,
    download it into the local conflicts folder (``.devspace/conflicts/``)."""

    path: RelPath
    entry: Entry
    reason: str = ""


@dataclass(frozen=True)
class Conflict:
    """Both sides hold different versions of ``path``; reported in the log and status.

    ``resolved=False``: nothing is transferred, both versions are left as they are and the
    pair is recorded in the ancestor with ``conflict=True``. ``resolved=True``: the plan also
    holds the transfers that settle it (the local version wins in the container, the
    container's version is saved first); this action is then a report only.
    """

    path: RelPath
    local: Optional[Entry]
    remote: Optional[Entry]
    reason: str
    resolved: bool = False


@slotted
@dataclass(frozen=True)
class Agree:
    """Both sides already hold the same thing at ``path`` (both ``None``: absent on both
    sides): record it as agreed (drop it from the ancestor when absent)."""

    path: RelPath
    local: Optional[Entry]
    remote: Optional[Entry]
    reason: str = ""


@dataclass(frozen=True)
class Keep:
    """Both sides are left as they are on purpose (an exclude list or the initial-sync
    policy keeps them apart); recorded in the ancestor so the watch phase does not mistake
    them for new changes. Not a conflict: nothing is reported as a problem."""

    path: RelPath
    local: Optional[Entry]
    remote: Optional[Entry]
    reason: str = ""


Action = Union[Upload, Download, DeleteRemote, DeleteLocal, SaveConflictCopy, Conflict, Agree, Keep]
Write = Union[Upload, Download]


def agree(path: RelPath, local: Optional[Entry], remote: Optional[Entry], reason: str) -> Agree:
    """``Agree(path, local, remote, reason)``, built as cheaply as :func:`ancestor_entry`."""
    act: Agree = _new(Agree)
    _set(act, "path", path)
    _set(act, "local", local)
    _set(act, "remote", remote)
    _set(act, "reason", reason)
    return act


_EMPTY: Mapping[RelPath, Entry] = MappingProxyType({})


def advance_ancestor(
    ancestor: Mapping[RelPath, AncestorEntry],
    actions: Iterable[Action],
    *,
    sent: Mapping[RelPath, Entry] = _EMPTY,
    written: Mapping[RelPath, Optional[Entry]] = _EMPTY,
    failed: AbstractSet[RelPath] = frozenset(),
) -> Ancestor:
    """The ancestor after ``actions`` ran.

    By default every action is assumed to have succeeded with entries reading back as
    planned. The engine passes what really happened: ``sent``, the source entry of each
    transferred path as read (it may be newer than the scan); ``written``, the entry the
    destination reports for each written path (``WriteResult.written``, in that side's own
    clock precision; ``None`` counts as failed); ``failed``, the paths of actions that did
    not happen (problems, expectation mismatches), which keep their previous state.
    """
    out: Ancestor = dict(ancestor)
    acts = [a for a in actions if a.path not in failed] if failed else list(actions)
    gone: Set[RelPath] = set()
    for act in acts:
        absent = isinstance(act, (Agree, Keep)) and act.local is None and act.remote is None
        if absent or isinstance(act, (DeleteRemote, DeleteLocal)):
            gone.add(act.path)
    if gone:
        for key in list(out):
            if key in gone or any(a in gone for a in ancestors(key)):
                del out[key]
    for act in acts:
        if type(act) is Agree:  # the common case first: most paths of a tree agree
            if act.local is not None or act.remote is not None:
                out[act.path] = ancestor_entry(act.local, act.remote)
        elif isinstance(act, (Upload, Download)):
            source = sent.get(act.path, act.entry)
            dest = written.get(act.path, act.entry)
            if dest is None:
                continue
            pair = (source, dest) if isinstance(act, Upload) else (dest, source)
            out[act.path] = AncestorEntry(*pair)
        elif isinstance(act, (Agree, Keep)) and (act.local is not None or act.remote is not None):
            out[act.path] = AncestorEntry(act.local, act.remote)
        elif isinstance(act, Conflict) and not act.resolved:
            out[act.path] = AncestorEntry(act.local, act.remote, conflict=True)
    return out


_STAGES: Dict[type, int] = {
    SaveConflictCopy: 0,
    DeleteRemote: 1,
    DeleteLocal: 1,
    Upload: 2,
    Download: 2,
    Conflict: 3,
    Agree: 3,
    Keep: 3,
}


def _stage(act: Action) -> int:
    return _STAGES[type(act)]


def _order_key(act: Action) -> Tuple[int, int, str]:
    stage = _STAGES[type(act)]
    path = act.path
    depth = path.count("/") if path else -1  # as core.paths.depth_key
    if stage == 1:
        return (stage, -depth, path)  # children before parents
    return (stage, depth, path)


def _redundant(act: Action, deleted: Mapping[Type[object], Set[RelPath]]) -> bool:
    """A deletion below a directory deleted on the same side."""
    if not isinstance(act, (DeleteRemote, DeleteLocal)):
        return False
    roots = deleted.get(type(act), set())
    return any(a in roots for a in ancestors(act.path))


@dataclass(frozen=True)
class Plan:
    """Actions in execution order (see the module docstring)."""

    actions: Tuple[Action, ...] = ()

    @classmethod
    def of(cls, actions: Iterable[Action]) -> "Plan":
        """Order ``actions`` for execution and drop deletions made redundant by a deletion
        of a directory above them on the same side."""
        acts = list(actions)
        deleted: Dict[Type[object], Set[RelPath]] = {DeleteRemote: set(), DeleteLocal: set()}
        for act in acts:
            if isinstance(act, (DeleteRemote, DeleteLocal)):
                deleted[type(act)].add(act.path)
        if deleted[DeleteRemote] or deleted[DeleteLocal]:
            acts = [a for a in acts if not _redundant(a, deleted)]
        return cls(tuple(sorted(acts, key=_order_key)))

    @property
    def uploads(self) -> Tuple[Upload, ...]:
        return tuple(a for a in self.actions if isinstance(a, Upload))

    @property
    def downloads(self) -> Tuple[Download, ...]:
        return tuple(a for a in self.actions if isinstance(a, Download))

    @property
    def deletes_remote(self) -> Tuple[DeleteRemote, ...]:
        return tuple(a for a in self.actions if isinstance(a, DeleteRemote))

    @property
    def deletes_local(self) -> Tuple[DeleteLocal, ...]:
        return tuple(a for a in self.actions if isinstance(a, DeleteLocal))

    @property
    def conflict_copies(self) -> Tuple[SaveConflictCopy, ...]:
        return tuple(a for a in self.actions if isinstance(a, SaveConflictCopy))

    @property
    def conflicts(self) -> Tuple[Conflict, ...]:
        return tuple(a for a in self.actions if isinstance(a, Conflict))

    @property
    def agreed(self) -> Tuple[Agree, ...]:
        return tuple(a for a in self.actions if isinstance(a, Agree))

    @property
    def kept(self) -> Tuple[Keep, ...]:
        return tuple(a for a in self.actions if isinstance(a, Keep))

    def changes(self) -> Tuple[Action, ...]:
        """The actions that touch a side (transfers, deletions, conflict copies)."""
        stages = _STAGES
        return tuple(a for a in self.actions if stages[type(a)] < 3)

    def is_empty(self) -> bool:
        """True when the plan neither changes a side nor reports a conflict (it may still
        hold :class:`Agree`/:class:`Keep` records for the ancestor)."""
        stages = _STAGES
        return not any(stages[type(a)] < 3 or type(a) is Conflict for a in self.actions)

    def summary(self) -> str:
        """One line, e.g. ``upload 3 (12.0 KiB), download 1 (20 B), delete remote 2,
        conflicts 1``; ``nothing to do`` when :meth:`is_empty`."""
        by_type: Dict[type, List[Action]] = {}
        for act in self.actions:  # one pass (a no-op sync of a big tree is all records)
            if type(act) is not Agree and type(act) is not Keep:
                by_type.setdefault(type(act), []).append(act)
        parts: List[str] = []
        for label, write_kind in (("upload", Upload), ("download", Download)):
            writes = by_type.get(write_kind)
            if writes:
                size = _bytes(writes)  # type: ignore[arg-type]
                parts.append(f"{label} {len(writes)} ({format_size(size)})")
        for label, kind in (
            ("delete remote", DeleteRemote),
            ("delete local", DeleteLocal),
            ("conflict copies", SaveConflictCopy),
            ("conflicts", Conflict),
        ):
            items = by_type.get(kind)
            if items:
                parts.append(f"{label} {len(items)}")
        return ", ".join(parts) if parts else "nothing to do"

    def describe(self, verbose: bool = False) -> List[str]:
        """One line per action for ``--dry-run``, e.g. ``upload        src/app.py (1.2 KiB,
        local newer)``. :class:`Agree` and :class:`Keep` records are listed only when
        ``verbose``."""
        return [
            describe_action(a)
            for a in self.actions
            if verbose or _stage(a) < 3 or isinstance(a, Conflict)
        ]


def _bytes(writes: Iterable[Write]) -> int:
    return sum(w.entry.size for w in writes if w.entry.kind != DIR and w.entry.kind != LINK)


def format_size(n: int) -> str:
    """``512 B``, ``1.2 KiB``, ``3.0 MiB``, ``1.5 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024.0
        if value < 1024.0 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _what(entry: Optional[Entry]) -> str:
    if entry is None:
        return "absent"
    if entry.kind == DIR:
        return "dir"
    if entry.kind == LINK:
        return f"link -> {entry.target}"
    return format_size(entry.size)


_VERBS = {
    Upload: "upload",
    Download: "download",
    DeleteRemote: "delete remote",
    DeleteLocal: "delete local",
    SaveConflictCopy: "save copy",
    Conflict: "conflict",
    Agree: "agree",
    Keep: "keep",
}


def describe_action(act: Action) -> str:
    """One human line for ``act`` (see :meth:`Plan.describe`)."""
    verb = _VERBS[type(act)]
    if isinstance(act, (Upload, Download, SaveConflictCopy)):
        detail = _what(act.entry)
    elif isinstance(act, (DeleteRemote, DeleteLocal)):
        detail = _what(act.expect) if isinstance(act.expect, Entry) else ""
    else:
        detail = f"local {_what(act.local)}, container {_what(act.remote)}"
    inner = ", ".join(x for x in (detail, act.reason) if x)
    return f"{verb:<13} {act.path} ({inner})" if inner else f"{verb:<13} {act.path}"

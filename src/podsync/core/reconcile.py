"""The watch phase: three-way reconciliation against the last agreed state, as a pure planner.

Owns: :func:`reconcile` and :func:`digest_candidates` (:func:`detect_mass_deletion`, the
guard run before a plan is applied, lives in ``core.massdelete`` and is re-exported here).
May import: the standard library and ``podsync.core``; no I/O.

Each side's current entry is compared with that side's own entry in the ancestor, so only
real changes count (never a clock-precision difference between the sides). Decisions are
made top-down, like Mutagen's: where both sides hold a directory the walk descends; at the
first path where one side holds something else (or nothing), the whole subtree below it is
decided at once, so a directory deleted on one side while a file inside it was edited on
the other is settled as a unit:

- nothing changed below: nothing to do.
- only one side changed: its subtree is copied over the other side (creations, edits,
  deletions), except paths the exclude lists or the mode block in that direction.
- both changed to the same thing: agreed.
- modification beats deletion: one side deleted, the other changed something inside: the
  surviving version is restored on the deleting side (no data lost).
- both changed differently: CONFLICT. The local version wins in the container; the
  container's version of every file it overwrites is first saved locally
  (:class:`SaveConflictCopy`, into ``.devspace/conflicts/``), and a :class:`Conflict` is
  reported. When uploads of the path are blocked (``uploadExcludePaths``, download-only
  mode) both versions are kept and the conflict is recorded instead: sync never overwrites
  a local edit it has not propagated. Upload-only mode: a local deletion wins over a
  container edit the same way (the container's version is saved first).

A pair left different by the initial sync (ancestor ``conflict=True``) stays as it is until
one side changes; a local edit then saves the container's copy before uploading.
Directories whose deletion would remove protected content (excluded or blocked for that
direction) are kept and only their other content is removed. Excluded paths are never
touched.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple, Type, Union

from podsync.core.ancestor import AncestorEntry
from podsync.core.entry import DIR, FILE, Entry, SnapshotView
from podsync.core.massdelete import (  # re-exported: engine.firstpass imports it from here
    detect_mass_deletion as detect_mass_deletion,
)
from podsync.core.paths import ROOT, RelPath, ancestors, is_within, parent
from podsync.core.plan import (
    Action,
    Agree,
    Conflict,
    DeleteLocal,
    DeleteRemote,
    Download,
    Keep,
    Plan,
    SaveConflictCopy,
    Upload,
)
from podsync.core.policy import ExcludeRules, PathIndex, Policy, same

AncestorView = Mapping[RelPath, AncestorEntry]

BOTH_CHANGED = (
    "changed on both sides; local version uploaded, container version saved in .devspace/conflicts/"
)


def reconcile(
    ancestor: AncestorView,
    local: SnapshotView,
    remote: SnapshotView,
    paths: Optional[Iterable[RelPath]],
    rules: ExcludeRules,
    *,
    upload_only: bool = False,
    download_only: bool = False,
    granularity_ns: int = 1,
) -> Plan:
    """Plan the propagation of changes made since ``ancestor`` (see the module docstring).

    A side changed when its entry differs from its own recorded one *exactly* (a side
    reports mtimes at a constant precision, and a same-size edit within one second must
    not be missed); ``granularity_ns`` (the coarser clock) only applies when comparing one
    side with the other. So the ancestor must hold each side's own entries: pass the
    entries endpoints report as written to :func:`~podsync.core.plan.advance_ancestor`.

    ``paths``: the hinted paths (``None`` or a hint of the root ``""``: everything). Each
    hinted path is decided with its whole subtree, starting at its topmost ancestor that is
    not an agreed directory on both sides. ``local``/``remote`` must hold at least those
    subtrees and the ancestors of each hinted path.
    """
    rec = _Reconciler(
        ancestor, local, remote, Policy(rules, upload_only, download_only), granularity_ns
    )
    for start in rec.starts(paths):
        rec.visit(start)
    return Plan.of(rec.out)


class _Reconciler:
    def __init__(
        self,
        ancestor: AncestorView,
        local: SnapshotView,
        remote: SnapshotView,
        policy: Policy,
        granularity_ns: int,
    ) -> None:
        self.a = ancestor
        self.local = local
        self.remote = remote
        self.policy = policy
        self.g = granularity_ns
        self.index = PathIndex(ancestor, local, remote)
        self.out: List[Action] = []

    # -- where to start ---------------------------------------------------------------

    def starts(self, paths: Optional[Iterable[RelPath]]) -> List[RelPath]:
        hinted = None if paths is None else list(paths)
        if hinted is None or ROOT in hinted:
            return list(self.index.children(ROOT))
        found: Set[RelPath] = set()
        for p in hinted:
            found.add(self.start_for(p))
        chosen: List[RelPath] = []
        for p in sorted(found, key=lambda x: (x.count("/"), x)):
            if not any(is_within(p, c) for c in chosen):
                chosen.append(p)
        return chosen

    def start_for(self, p: RelPath) -> RelPath:
        for q in ancestors(p):
            if not self.settled_dir(q):
                return q
        return p

    def settled_dir(self, q: RelPath) -> bool:
        lo, re, an = self.local.get(q), self.remote.get(q), self.a.get(q)
        return (
            _is_dir(lo)
            and _is_dir(re)
            and an is not None
            and _is_dir(an.local)
            and _is_dir(an.remote)
            and not an.conflict
        )

    # -- per-side state -----------------------------------------------------------------

    def was(self, k: RelPath) -> Tuple[Optional[Entry], Optional[Entry], bool]:
        an = self.a.get(k)
        return (None, None, False) if an is None else (an.local, an.remote, an.conflict)

    def l_changed(self, k: RelPath) -> bool:
        return not same(self.local.get(k), self.was(k)[0])

    def r_changed(self, k: RelPath) -> bool:
        return not same(self.remote.get(k), self.was(k)[1])

    def excluded(self, k: RelPath) -> bool:
        a_l, a_r, _ = self.was(k)
        return self.policy.excluded(k, self.local.get(k), self.remote.get(k), a_l, a_r)

    def subtree(self, p: RelPath) -> List[RelPath]:
        """``p`` and its non-excluded descendants on any side, parents first. Only a path
        that is (or was) a directory somewhere has descendants; skip the index otherwise."""
        a_l, a_r, _ = self.was(p)
        if not any(_is_dir(e) for e in (self.local.get(p), self.remote.get(p), a_l, a_r)):
            return [p]
        return [p] + [k for k in self.index.below(p) if not self.excluded(k)]

    # -- decisions ----------------------------------------------------------------------

    def visit(self, p: RelPath) -> None:
        if self.excluded(p):
            return
        lo, re = self.local.get(p), self.remote.get(p)
        if _is_dir(lo) and _is_dir(re):
            if not self.settled_dir(p):
                self.out.append(Agree(p, lo, re, "directory on both sides"))
            for child in self.index.children(p):
                self.visit(child)
            return
        keys = self.subtree(p)
        lchg = any(self.l_changed(k) for k in keys)
        rchg = any(self.r_changed(k) for k in keys)
        if lchg and rchg:
            self.both_changed(p, lo, re, keys)
        elif lchg:
            self.push(keys, "changed locally")
        elif rchg:
            self.pull(keys, "changed in container")

    def both_changed(
        self, p: RelPath, lo: Optional[Entry], re: Optional[Entry], keys: List[RelPath]
    ) -> None:
        if lo is None and re is None:
            self.settle_absent(keys, "deleted on both sides")
        elif lo is not None and re is not None and self.equal(lo, re):
            self.out.append(Agree(p, lo, re, "same change on both sides"))
            self.settle_absent(keys[1:], "gone on both sides")
        elif lo is None:
            # Modification beats deletion: restore the container's version locally.
            if self.policy.can_download(p, re):
                self.pull(keys, "deleted locally, changed in container: restored")
            elif self.policy.can_upload(p, re):
                if self.push(keys, "deleted locally, changed in container: upload-only"):
                    why = "deleted locally, changed in container; local deletion wins"
                    self.out.append(Conflict(p, lo, re, why, resolved=True))
            else:
                self.keep(p, keys, "deleted locally, changed in container; both kept")
        elif not self.policy.can_upload(p, lo, re):
            # Overwriting or deleting the local edit would lose it: keep both, report.
            self.keep(p, keys, "changed on both sides; uploads of it are blocked, both kept")
        elif re is None:
            self.push(keys, "changed locally, deleted in container: restored")
        else:
            if self.push(keys, "changed on both sides: local version wins"):
                self.out.append(Conflict(p, lo, re, BOTH_CHANGED, resolved=True))

    def equal(self, lo: Entry, re: Entry) -> bool:
        """Same content: digests decide when both sides supplied one, else size+mtime."""
        if lo.kind == FILE and re.kind == FILE and lo.digest is not None and re.digest is not None:
            return lo.size == re.size and lo.executable == re.executable and lo.digest == re.digest
        return lo.same_content(re, self.g)

    def settle_absent(self, keys: Iterable[RelPath], reason: str) -> None:
        for k in keys:
            if k in self.a and self.local.get(k) is None and self.remote.get(k) is None:
                self.out.append(Agree(k, None, None, reason))

    def keep(self, p: RelPath, keys: List[RelPath], reason: str) -> None:
        """Leave the subtree as it is, the top reported and recorded as a conflict."""
        self.out.append(Conflict(p, self.local.get(p), self.remote.get(p), reason))
        for k in keys[1:]:
            self.out.append(Keep(k, self.local.get(k), self.remote.get(k), "inside a conflict"))

    def settled_pair(self, k: RelPath, up: bool) -> bool:
        """True (after recording agreement if needed) when nothing has to move at ``k``
        while copying a subtree towards the container (``up``) or the local side."""
        lo, re = self.local.get(k), self.remote.get(k)
        l_chg, r_chg = self.l_changed(k), self.r_changed(k)
        if not l_chg and not r_chg:
            return True  # nothing happened here; a pair recorded apart stays apart
        src, dst = (lo, re) if up else (re, lo)
        src_chg, dst_chg = (l_chg, r_chg) if up else (r_chg, l_chg)
        # Only the source changed: any difference from the untouched destination is real,
        # even one finer than the coarser clock (a same-size edit within one second).
        if not same(src, dst, 1 if src_chg and not dst_chg else self.g):
            return False
        if lo is not None or re is not None or k in self.a:
            self.out.append(Agree(k, lo, re, "same on both sides"))
        return True

    def push(self, keys: List[RelPath], reason: str) -> bool:
        """Make the container's subtree equal the local one where uploads are allowed."""
        return self.copy(keys, reason, up=True)

    def pull(self, keys: List[RelPath], reason: str) -> bool:
        """Make the local subtree equal the container's where downloads are allowed."""
        return self.copy(keys, reason, up=False)

    def copy(self, keys: List[RelPath], reason: str, up: bool) -> bool:
        """Copy the subtree ``keys`` (parents first) from one side over the other; True
        when the top path itself is written or deleted."""
        src, dst = (self.local, self.remote) if up else (self.remote, self.local)
        allowed = self.policy.can_upload if up else self.policy.can_download
        out: List[Action] = []
        back: List[Action] = []
        after: Dict[RelPath, Optional[Entry]] = {}  # destination state once ``out`` has run
        top = parent(keys[0])
        for k in keys:
            s, d = src.get(k), dst.get(k)
            after[k] = d
            if self.settled_pair(k, up):
                continue
            if not allowed(k, self.local.get(k), self.remote.get(k)):
                back.extend(self.flow_back(k, s, d, up))
                continue
            if s is not None and parent(k) != top and not _is_dir(after.get(parent(k))):
                continue  # its parent stays something else there (kept apart or blocked)
            if up and d is not None and d.kind != DIR and self.unseen_remote(k):
                out.append(SaveConflictCopy(k, d, "container version replaced by the local one"))
            after[k] = s
            if s is None:
                out.append(_delete(up)(k, d, _deleted(reason)))
            elif d is not None and (s.kind == DIR) != (d.kind == DIR):
                out.append(_delete(up)(k, d, "kind changed"))
                out.append(_write(up)(k, s, None, reason))
            else:
                out.append(_write(up)(k, s, d, reason))
        done = self.spare(out, on_remote=up)
        self.out.extend(done)
        self.out.extend(self.spare(back, on_remote=not up))
        return any(a.path == keys[0] and _stage_io(a) for a in done)

    def flow_back(
        self, k: RelPath, s: Optional[Entry], d: Optional[Entry], up: bool
    ) -> List[Action]:
        """``k`` may not move the copy's way. When only the destination changed it (the
        copy restores a subtree deleted there), that change flows back instead where
        allowed, so this pass settles what the next one would (deletions and file/link
        edits; anything involving a directory waits for the next pass)."""
        src_chg, dst_chg = (self.l_changed(k), self.r_changed(k))[:: 1 if up else -1]
        lo, re = self.local.get(k), self.remote.get(k)
        allowed = self.policy.can_download if up else self.policy.can_upload
        if src_chg or not dst_chg or s is None or not allowed(k, lo, re):
            return []
        why = "changed in container" if up else "changed locally"
        acts: List[Action] = []
        if not up and re is not None and re.kind != DIR and self.unseen_remote(k):
            acts.append(SaveConflictCopy(k, re, "container version replaced by the local one"))
        if d is None:
            return [*acts, _delete(not up)(k, s, _deleted(why))]
        if DIR in (s.kind, d.kind):
            return []
        return [*acts, _write(not up)(k, d, s, why)]

    def unseen_remote(self, k: RelPath) -> bool:
        """Does the container hold a version at ``k`` that the local side never had?"""
        a_l, _, conflict = self.was(k)
        return conflict or a_l is None or self.r_changed(k)

    def spare(self, acts: List[Action], on_remote: bool) -> List[Action]:
        """Drop the deletion of every directory that still holds something this pass leaves
        on that side (blocked, excluded or a recorded conflict); a creation that was to
        replace such a directory becomes a conflict instead."""
        side = self.remote if on_remote else self.local
        kind = DeleteRemote if on_remote else DeleteLocal
        deleted = {a.path for a in acts if isinstance(a, kind)}
        dirs = [a.path for a in acts if isinstance(a, kind) and _is_dir(_entry(a.expect))]
        spared: Set[RelPath] = set()
        for d in sorted(dirs, key=lambda x: -x.count("/")):  # deepest first
            for k in self.index.below(d):
                if side.get(k) is None or k in deleted:
                    continue
                if not any(up in deleted for up in ancestors(k) if is_within(up, d) and up != d):
                    spared.add(d)
                    deleted.discard(d)
                    break
        if not spared:
            return acts
        written = {a.path for a in acts if isinstance(a, (Upload, Download))}
        result: List[Action] = [a for a in acts if not (a.path in spared and _stage_io(a))]
        for d in sorted(spared):
            lo, re = self.local.get(d), self.remote.get(d)
            if d in written:
                result.append(Conflict(d, lo, re, "directory holds protected paths; both kept"))
            else:
                result.append(Keep(d, lo, re, "directory holds protected paths; kept"))
        return result


def _stage_io(a: Action) -> bool:
    return isinstance(a, (Upload, Download, DeleteRemote, DeleteLocal))


def _delete(up: bool) -> Union[Type[DeleteRemote], Type[DeleteLocal]]:
    return DeleteRemote if up else DeleteLocal


def _write(up: bool) -> Union[Type[Upload], Type[Download]]:
    return Upload if up else Download


def _entry(expect: object) -> Optional[Entry]:
    return expect if isinstance(expect, Entry) else None


def _is_dir(e: Optional[Entry]) -> bool:
    return e is not None and e.kind == DIR


def _deleted(reason: str) -> str:
    return reason.replace("changed", "deleted", 1) if reason.startswith("changed") else reason


def digest_candidates(plan: Plan) -> Tuple[RelPath, ...]:
    """Conflicts that equal content would dissolve: both sides hold a file of the same size
    and exec bit (e.g. the same ``git checkout`` on both sides). The engine may fetch both
    SHA-256 digests, set them on the entries (``Entry.digest``) and reconcile again: equal
    digests are then agreed instead of uploaded and saved as conflict copies."""
    return tuple(
        c.path
        for c in plan.conflicts
        if c.local is not None
        and c.remote is not None
        and c.local.kind == FILE
        and c.remote.kind == FILE
        and (c.local.size, c.local.executable) == (c.remote.size, c.remote.executable)
        and (c.local.digest is None or c.remote.digest is None)
    )

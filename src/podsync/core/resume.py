"""A restart that resumes from the persisted last agreed state, as a pure planner.

Owns: :func:`plan_resume`. May import: the standard library and ``podsync.core``; no I/O.

When podsync starts again on the same container filesystem and finds the last agreed state of
the pair on disk, the paths it holds a record of are decided three ways, exactly as in the
watch phase (``core.reconcile``): an edit made on one side while podsync was stopped flows to
the other side, a deletion on one side is a deletion on the other (locally through the trash),
and different changes on both sides are a conflict. Only the paths with no record follow the
spec's initial-sync rules (``core.initial``): local only -> upload, container only -> deleted
(or downloaded with ``downloadOnInitialSync``), on both sides -> the newer mtime decides.

How the two are combined: the reconciler sees both trees with the unrecorded paths taken out,
so it decides recorded paths only; the initial planner sees the whole trees and only its
actions at unrecorded paths are kept. A directory decided as a unit by one planner (deleted,
kept, conflicting) covers what lies below it; ``Plan.of`` drops the deletions that a deletion
above makes redundant.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence, Set, Tuple

from podsync.core.ancestor import AncestorEntry
from podsync.core.entry import Entry, SnapshotView
from podsync.core.initial import Digests, InitialResult, plan_initial_sync
from podsync.core.paths import RelPath, ancestors
from podsync.core.plan import Action, DeleteLocal, DeleteRemote, Download, Plan, Upload
from podsync.core.policy import ExcludeRules, same
from podsync.core.reconcile import reconcile

AncestorView = Mapping[RelPath, AncestorEntry]


def plan_resume(
    ancestor: AncestorView,
    local: SnapshotView,
    remote: SnapshotView,
    rules: ExcludeRules,
    *,
    download_on_initial_sync: bool,
    upload_only: bool = False,
    download_only: bool = False,
    granularity_ns: int = 1,
    digests: Optional[Digests] = None,
) -> InitialResult:
    """Plan a restart against the persisted ``ancestor`` (see the module docstring).

    Returns an :class:`InitialResult`: ``needs_digest`` lists unrecorded files on both sides
    whose content must be compared before they can be decided (call again with ``digests``).
    """
    if _nothing_changed(ancestor, local, remote):
        return InitialResult(Plan(), ())  # the common restart, at a fraction of the cost
    fresh = _unrecorded(ancestor, local, remote)
    while True:
        known_local: SnapshotView = local
        known_remote: SnapshotView = remote
        if fresh:
            known_local = _without(local, fresh)
            known_remote = _without(remote, fresh)
        actions = list(
            reconcile(
                ancestor,
                known_local,
                known_remote,
                None,
                rules,
                upload_only=upload_only,
                download_only=download_only,
                granularity_ns=granularity_ns,
            ).actions
        )
        # New content below a recorded directory the reconcile would delete must be seen by
        # it (modification beats deletion, as in the watch phase), not deleted with it.
        deleted = {a.path for a in actions if isinstance(a, (DeleteRemote, DeleteLocal))}
        inside = {p for p in fresh if deleted and any(a in deleted for a in ancestors(p))}
        if not inside:
            break
        fresh -= inside
    needs: Tuple[RelPath, ...] = ()
    if fresh:
        # The initial rules judge the unrecorded paths in the trees as the reconcile plan
        # leaves them: a recorded directory it deletes takes its new content with it, one it
        # restores is there for the new content to be decided inside.
        after_local, after_remote = _after(actions, local, remote)
        initial = plan_initial_sync(
            after_local,
            after_remote,
            rules,
            download_on_initial_sync=download_on_initial_sync,
            upload_only=upload_only,
            download_only=download_only,
            granularity_ns=granularity_ns,
            digests=digests or {},
        )
        actions.extend(_at(initial.plan.actions, fresh))
        needs = tuple(p for p in initial.needs_digest if p in fresh)
    return InitialResult(Plan.of(actions), needs)


def _nothing_changed(ancestor: AncestorView, local: SnapshotView, remote: SnapshotView) -> bool:
    """Both sides hold exactly what the ancestor recorded (nothing to plan)."""
    if len(local) > len(ancestor) or len(remote) > len(ancestor):
        return False
    for path, was in ancestor.items():
        if not same(local.get(path), was.local) or not same(remote.get(path), was.remote):
            return False
    return all(p in ancestor for p in local) and all(p in ancestor for p in remote)


def _unrecorded(ancestor: AncestorView, local: SnapshotView, remote: SnapshotView) -> Set[RelPath]:
    out = {p for p in local if p not in ancestor}
    out.update(p for p in remote if p not in ancestor)
    return out


def _without(snapshot: SnapshotView, drop: Set[RelPath]) -> Dict[RelPath, Entry]:
    return {p: e for p, e in snapshot.items() if p not in drop}


def _after(
    actions: Sequence[Action], local: SnapshotView, remote: SnapshotView
) -> Tuple[Dict[RelPath, Entry], Dict[RelPath, Entry]]:
    """Both trees once ``actions`` ran as planned (one pass per side: O(paths x depth))."""
    lo, re = dict(local), dict(remote)
    gone: Dict[bool, Set[RelPath]] = {True: set(), False: set()}
    for act in actions:
        if isinstance(act, (DeleteRemote, DeleteLocal)):
            gone[isinstance(act, DeleteRemote)].add(act.path)
    for is_remote, roots in gone.items():
        side = re if is_remote else lo
        if roots:
            for k in [k for k in side if k in roots or any(a in roots for a in ancestors(k))]:
                del side[k]
    for act in actions:
        if isinstance(act, Upload):
            re[act.path] = act.entry
        elif isinstance(act, Download):
            lo[act.path] = act.entry
    return lo, re


def _at(actions: Iterable[Action], paths: Set[RelPath]) -> Iterable[Action]:
    return (a for a in actions if a.path in paths)

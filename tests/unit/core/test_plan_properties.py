"""Property tests of the planners over random trees, rules and modes (hypothesis).

A tiny pure simulator applies a plan to in-memory snapshots, checking each action's
expectation against what is there, so the properties are about outcomes:

- no action touches an excluded path, or a path blocked for that direction (a deletion of a
  directory counts for everything below it);
- the initial sync leaves both sides equal except where it reported or recorded why not,
  and planning it again changes nothing; the watch phase then finds nothing to do;
- after random edits on both sides, reconcile never overwrites or deletes a local entry
  the user changed, saves every container version it destroys that we had not agreed on,
  converges in one step (a second reconcile is empty), and planning from hints covering
  the edits gives the same changes as planning everything;
- every action path is a valid RelPath.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podsync.core.ancestor import Ancestor, AncestorEntry
from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.excludes import Rules
from podsync.core.initial import InitialResult, plan_initial_sync
from podsync.core.paths import ROOT, RelPath, ancestors, is_within, parent, relpath
from podsync.core.plan import (
    Action,
    DeleteLocal,
    DeleteRemote,
    Download,
    Plan,
    SaveConflictCopy,
    Upload,
    advance_ancestor,
)
from podsync.core.reconcile import reconcile

S = 10**9
NAMES = ("a", "b", "nm")
Snap = dict[RelPath, Entry]


def _paths(prefix: str, depth: int) -> list[RelPath]:
    out: list[RelPath] = []
    for n in NAMES:
        p = RelPath(f"{prefix}/{n}" if prefix else n)
        out.append(p)
        if depth > 1:
            out.extend(_paths(p, depth - 1))
    return out


ALL_PATHS = _paths("", 3)

files = st.builds(
    Entry,
    st.just(FILE),
    st.sampled_from([1, 2]),
    st.sampled_from([1 * S, 2 * S, 2 * S + 7, 3 * S]),
    st.booleans(),
)
links = st.builds(
    lambda t, m: Entry(LINK, mtime_ns=m, target=t),
    st.sampled_from(["x", "y"]),
    st.sampled_from([S, 3 * S]),
)


@st.composite
def trees(draw: st.DrawFn, prefix: str = "", depth: int = 3) -> Snap:
    """A consistent tree: every entry's parent is a directory."""
    out: Snap = {}
    for n in NAMES:
        p = RelPath(f"{prefix}/{n}" if prefix else n)
        kind = draw(
            st.sampled_from(
                ["none", "none", "file", "dir", "link"] if depth > 1 else ["none", "file", "link"]
            )
        )
        if kind == "file":
            out[p] = draw(files)
        elif kind == "link":
            out[p] = draw(links)
        elif kind == "dir":
            out[p] = Entry(DIR)
            out.update(draw(trees(p, depth - 1)))
    return out


def graft(base: Snap, other: Snap, at: RelPath) -> Snap:
    """``base`` with the subtree at ``at`` replaced by ``other``'s (when its parent is a dir)."""
    out = {k: v for k, v in base.items() if not is_within(k, at)}
    up = parent(at)
    if up == ROOT or (up in out and out[up].kind == DIR):
        out.update({k: v for k, v in other.items() if is_within(k, at)})
    return out


@st.composite
def edits(draw: st.DrawFn, base: Snap) -> tuple[Snap, set[RelPath]]:
    """``base`` with a few subtrees replaced; returns the new tree and the edited paths."""
    other = draw(trees())
    where = draw(st.sets(st.sampled_from(ALL_PATHS), max_size=3))
    out = dict(base)
    for at in sorted(where):
        out = graft(out, other, at)
    return out, where


rules_st = st.builds(
    lambda e, u, d: Rules(exclude=e, upload_exclude=u, download_exclude=d),
    st.lists(st.sampled_from(["nm/", "a/b", "*/nm"]), max_size=2, unique=True),
    st.lists(st.sampled_from(["b", "nm", "a/a/"]), max_size=2, unique=True),
    st.lists(st.sampled_from(["a/a", "b/", "nm/b"]), max_size=2, unique=True),
)
modes = st.sampled_from([(False, False), (False, False), (True, False), (False, True)])


class Mode:
    def __init__(self, rules: Rules, upload_only: bool, download_only: bool) -> None:
        self.rules, self.upload_only, self.download_only = rules, upload_only, download_only

    def __repr__(self) -> str:
        return f"Mode({self.rules!r}, up_only={self.upload_only}, down_only={self.download_only})"

    def _any(self, p: RelPath, entries: Iterable[Entry | None], blocked: str) -> bool:
        kinds = {e.kind == DIR for e in entries if e is not None} or {False}
        return any(self.rules.excluded(p, d) or getattr(self.rules, blocked)(p, d) for d in kinds)

    def excluded(self, p: RelPath, *entries: Entry | None) -> bool:
        kinds = {e.kind == DIR for e in entries if e is not None} or {False}
        return any(self.rules.excluded(p, d) for d in kinds)

    def up_ok(self, p: RelPath, *entries: Entry | None) -> bool:
        return not self.download_only and not self._any(p, entries, "blocks_upload")

    def down_ok(self, p: RelPath, *entries: Entry | None) -> bool:
        return not self.upload_only and not self._any(p, entries, "blocks_download")


def _matches(expect: object, current: Entry | None) -> bool:
    if expect is None:
        return current is None
    assert isinstance(expect, Entry)
    return current is not None and expect.same_content(current)


def coarse(e: Entry) -> Entry:
    """``e`` as a side with a one-second mtime clock stores it."""
    return replace(e, mtime_ns=e.mtime_ns // S * S) if e.kind == FILE else e


def coarsen(snap: Snap) -> Snap:
    return {k: coarse(v) for k, v in snap.items()}


def apply(
    plan: Plan, local: Snap, remote: Snap, mode: Mode, coarse_remote: bool = False
) -> tuple[Snap, Snap, dict[RelPath, Entry | None]]:
    """Execute ``plan`` on copies of both sides, asserting every safety rule on the way.
    Returns both sides and the entries written as each destination stores them."""
    local, remote = dict(local), dict(remote)
    written: dict[RelPath, Entry | None] = {}
    for act in plan.actions:
        assert relpath(act.path) == act.path and act.path != ROOT
        if isinstance(act, (Upload, DeleteRemote, SaveConflictCopy)):
            _act_on(act, remote, mode.up_ok, mode, coarse_remote)
            if isinstance(act, Upload):
                written[act.path] = remote[act.path]
        elif isinstance(act, (Download, DeleteLocal)):
            _act_on(act, local, mode.down_ok, mode, False)
            if isinstance(act, Download):
                written[act.path] = local[act.path]
    return local, remote, written


def _act_on(act: Action, side: Snap, ok: object, mode: Mode, coarse_clock: bool) -> None:
    assert callable(ok)
    p = act.path
    if isinstance(act, SaveConflictCopy):
        assert _matches(act.entry, side.get(p)) and act.entry.kind != DIR
        return
    assert isinstance(act, (Upload, Download, DeleteRemote, DeleteLocal))
    assert _matches(act.expect, side.get(p)), (act, side.get(p))
    if isinstance(act, (DeleteRemote, DeleteLocal)):
        for k in [k for k in side if is_within(k, p)]:
            assert ok(k, side[k]), f"{act} removes blocked {k}"
            del side[k]
        return
    assert ok(p, act.entry, side.get(p)), f"{act} writes a blocked path"
    assert not mode.excluded(p, act.entry)
    old = side.get(p)
    assert old is None or (old.kind == DIR) == (act.entry.kind == DIR), "dir replaced in place"
    up = parent(p)
    assert up == ROOT or (up in side and side[up].kind == DIR), f"{act}: parent missing"
    side[p] = coarse(act.entry) if coarse_clock else act.entry


def digests_for(result: InitialResult, equal: bool) -> dict[RelPath, tuple[str | None, str | None]]:
    return {p: ("h", "h" if equal else "g") for p in result.needs_digest}


def initial(
    local: Snap, remote: Snap, mode: Mode, download: bool, granularity: int, equal: bool
) -> InitialResult:
    """The initial plan, asking again with digests when the planner needs them."""
    digests: dict[RelPath, tuple[str | None, str | None]] = {}
    for _ in range(2):
        result = plan_initial_sync(
            local,
            remote,
            mode.rules,
            download_on_initial_sync=download,
            upload_only=mode.upload_only,
            download_only=mode.download_only,
            granularity_ns=granularity,
            digests=digests,
        )
        if not result.needs_digest:
            break
        digests = digests_for(result, equal)
    return result


def _recorded_apart(p: RelPath, ancestor: Mapping[RelPath, AncestorEntry]) -> bool:
    """Is ``p`` or a directory above it recorded as left different on purpose?"""
    for q in [*ancestors(p), p]:
        a = ancestor.get(q)
        if a is not None and (a.conflict or not _same(a.local, a.remote)):
            return True
    return False


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    if a.kind != b.kind:
        return False
    return (
        a.kind == DIR
        or (a.kind == LINK and a.target == b.target)
        or (a.size, a.executable) == (b.size, b.executable)
    )


# PODSYNC_EXAMPLES=5000 for a deeper run.
SETTINGS = settings(
    max_examples=int(os.environ.get("PODSYNC_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(trees(), trees(), rules_st, modes, st.booleans(), st.sampled_from([1, S]), st.booleans())
def test_initial_sync_converges_and_is_idempotent(
    local: Snap,
    remote: Snap,
    rules: Rules,
    m: tuple[bool, bool],
    download: bool,
    gran: int,
    equal: bool,
) -> None:
    mode = Mode(rules, *m)
    coarse_remote = gran == S  # the container's clock has whole seconds
    if coarse_remote:
        remote = coarsen(remote)
    result = initial(local, remote, mode, download, gran, equal)
    assert result.needs_digest == ()
    if mode.download_only:
        pass  # download-only may replace an older local file (the trash keeps it)
    else:
        assert not result.plan.downloads or all(d.expect is None for d in result.plan.downloads)
        assert not result.plan.deletes_local
    new_local, new_remote, written = apply(result.plan, local, remote, mode, coarse_remote)
    ancestor = advance_ancestor({}, result.plan.actions, written=written)
    assert coarse_remote or ancestor == result.ancestor
    for p in set(new_local) | set(new_remote):
        lo, re = new_local.get(p), new_remote.get(p)
        if mode.excluded(p, lo, re) or _recorded_apart(p, ancestor):
            continue
        if lo is not None and re is None:
            assert not mode.up_ok(p, lo) or any(
                not mode.up_ok(q, new_local.get(q)) for q in ancestors(p)
            ), p
            continue
        assert _same(lo, re), (p, lo, re)
        assert p in ancestor
    # Planning again changes nothing, and the watch phase agrees nothing happened.
    again = initial(new_local, new_remote, mode, download, gran, equal)
    assert again.plan.changes() == ()
    assert {c.path for c in again.plan.conflicts} <= {c.path for c in result.plan.conflicts}
    watch = reconcile(
        ancestor,
        new_local,
        new_remote,
        None,
        rules,
        upload_only=m[0],
        download_only=m[1],
        granularity_ns=gran,
    )
    assert watch.is_empty(), watch.describe()


@st.composite
def watch_cases(draw: st.DrawFn) -> WatchCase:
    """A pair after a real initial sync, then random edits on both sides."""
    mode = Mode(draw(rules_st), *draw(modes))
    gran = draw(st.sampled_from([1, S]))
    base_local, base_remote = draw(trees()), draw(trees())
    if draw(st.booleans()):
        base_remote = dict(base_local)
    if gran == S:
        base_remote = coarsen(base_remote)
    result = initial(base_local, base_remote, mode, draw(st.booleans()), gran, draw(st.booleans()))
    local, remote, written = apply(result.plan, base_local, base_remote, mode, gran == S)
    ancestor = advance_ancestor({}, result.plan.actions, written=written)
    new_local, l_edits = draw(edits(local))
    new_remote, r_edits = draw(edits(remote))
    if gran == S:
        new_remote = coarsen(new_remote)
    return WatchCase(mode, gran, ancestor, new_local, new_remote, l_edits | r_edits)


@dataclass
class WatchCase:
    mode: Mode
    gran: int
    ancestor: Ancestor
    local: Snap
    remote: Snap
    edited: set[RelPath]


@SETTINGS
@given(watch_cases(), st.data())
def test_reconcile_is_safe_and_converges(case: WatchCase, data: st.DataObject) -> None:
    """Three rounds of edits on both sides, each reconciled, applied and checked."""
    mode, gran = case.mode, case.gran

    def plan_for(
        a: Mapping[RelPath, AncestorEntry], lo: Snap, re: Snap, hints: list[RelPath] | None
    ) -> Plan:
        up, down = mode.upload_only, mode.download_only
        return reconcile(
            a, lo, re, hints, mode.rules, upload_only=up, download_only=down, granularity_ns=gran
        )

    ancestor, local, remote, edited = case.ancestor, case.local, case.remote, case.edited
    for _ in range(3):
        plan = plan_for(ancestor, local, remote, None)
        _assert_no_loss(plan, ancestor, local, remote)
        hinted = plan_for(ancestor, local, remote, sorted(edited))
        assert set(hinted.changes()) == set(plan.changes())
        local, remote, written = apply(plan, local, remote, mode, gran == S)
        ancestor = advance_ancestor(ancestor, plan.actions, written=written)
        again = plan_for(ancestor, local, remote, None)
        assert again.is_empty(), (plan.describe(), again.describe())
        local, l_edits = data.draw(edits(local))
        remote, r_edits = data.draw(edits(remote))
        remote = coarsen(remote) if gran == S else remote
        edited = l_edits | r_edits


def _assert_no_loss(
    plan: Plan, ancestor: Mapping[RelPath, AncestorEntry], local: Snap, remote: Snap
) -> None:
    """Local: only entries unchanged since the ancestor are replaced or removed. Container:
    every file replaced or removed that we had not agreed on is saved first."""

    def agreed_local(k: RelPath) -> bool:
        a = ancestor.get(k)
        return a is not None and a.local is not None and a.local.same_content(local.get(k))

    saved = {a.path for a in plan.conflict_copies}
    for act in plan.actions:
        if isinstance(act, (Download, DeleteLocal)):
            for k in (
                [k for k in local if is_within(k, act.path)]
                if isinstance(act, DeleteLocal)
                else [act.path]
            ):
                if k in local:
                    assert agreed_local(k), f"{act} destroys unsynced local {k}"
        if isinstance(act, (Upload, DeleteRemote)):
            for k in (
                [k for k in remote if is_within(k, act.path)]
                if isinstance(act, DeleteRemote)
                else [act.path]
            ):
                r, a = remote.get(k), ancestor.get(k)
                if r is None or r.kind == DIR:
                    continue
                if (
                    a is None
                    or a.conflict
                    or a.local is None
                    or a.remote is None
                    or not a.remote.same_content(r)
                ):
                    assert k in saved, f"{act} destroys unsaved container {k}"
    # What is left apart on purpose is not also changed by the same plan.
    touched = {a.path for a in plan.changes()}
    apart = [c.path for c in plan.conflicts if not c.resolved] + [k.path for k in plan.kept]
    assert not touched & set(apart), plan.describe()

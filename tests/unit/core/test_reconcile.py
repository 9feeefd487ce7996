"""Table tests of the watch-phase three-way rules (``core.reconcile``).

Named fixture entries; every row gives the ancestor, both sides now, and the expected plan
as ``"verb path"`` strings in execution order (records are checked separately).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import pytest

from podsync.core.ancestor import AncestorEntry
from podsync.core.entry import DIR, FILE, Entry
from podsync.core.excludes import Rules
from podsync.core.massdelete import MASS_MIN, detect_mass_deletion
from podsync.core.paths import RelPath
from podsync.core.plan import (
    Agree,
    Conflict,
    DeleteLocal,
    DeleteRemote,
    Download,
    Plan,
    SaveConflictCopy,
    Upload,
    advance_ancestor,
)
from podsync.core.reconcile import BOTH_CHANGED, digest_candidates, reconcile

S = 10**9
BASE = Entry(FILE, 10, 100 * S)  # the agreed version
MINE = Entry(FILE, 20, 200 * S)  # a local edit
THEIRS = Entry(FILE, 30, 300 * S)  # a container edit
D = Entry(DIR)

VERBS = {
    Upload: "upload",
    Download: "download",
    DeleteRemote: "delete-remote",
    DeleteLocal: "delete-local",
    SaveConflictCopy: "save-copy",
    Conflict: "conflict",
}


def short(plan: Plan) -> list[str]:
    return [f"{VERBS[type(a)]} {a.path}" for a in plan.actions if type(a) in VERBS]


def snap(**entries: Entry | None) -> dict[RelPath, Entry]:
    """``__`` in a name stands for ``/``; ``None`` values are left out (absent)."""
    return {RelPath(k.replace("__", "/")): v for k, v in entries.items() if v is not None}


def agreed(**entries: Entry) -> dict[RelPath, AncestorEntry]:
    return {RelPath(k.replace("__", "/")): AncestorEntry(v, v) for k, v in entries.items()}


@dataclass
class Row:
    name: str
    ancestor: Mapping[RelPath, AncestorEntry]
    local: Mapping[RelPath, Entry]
    remote: Mapping[RelPath, Entry]
    expect: list[str]
    rules: Rules = field(default_factory=Rules)
    paths: Iterable[str] | None = None
    upload_only: bool = False
    download_only: bool = False
    granularity: int = 1


A = agreed(a=BASE)
TREE = agreed(d=D, d__x=BASE, d__y=BASE)
CONFLICTED = {RelPath("a"): AncestorEntry(BASE, THEIRS, conflict=True)}

ROWS = [
    # --- one file agreed as BASE: every cell of {unchanged, modified, deleted}^2 ----------
    Row("unchanged / unchanged", A, snap(a=BASE), snap(a=BASE), []),
    Row("unchanged / modified: download", A, snap(a=BASE), snap(a=THEIRS), ["download a"]),
    Row("unchanged / deleted: delete locally", A, snap(a=BASE), {}, ["delete-local a"]),
    Row("modified / unchanged: upload", A, snap(a=MINE), snap(a=BASE), ["upload a"]),
    Row(
        "modified / modified differently: conflict, local wins",
        A,
        snap(a=MINE),
        snap(a=THEIRS),
        ["save-copy a", "upload a", "conflict a"],
    ),
    Row("modified / modified the same: agree", A, snap(a=MINE), snap(a=MINE), []),
    Row("modified / deleted: modification wins, upload", A, snap(a=MINE), {}, ["upload a"]),
    Row("deleted / unchanged: delete in container", A, {}, snap(a=BASE), ["delete-remote a"]),
    Row("deleted / modified: modification wins, restore", A, {}, snap(a=THEIRS), ["download a"]),
    Row("deleted / deleted: agree", A, {}, {}, []),
    # --- no ancestor: creations ------------------------------------------------------------
    Row("created locally", {}, snap(a=MINE), {}, ["upload a"]),
    Row("created in container", {}, {}, snap(a=THEIRS), ["download a"]),
    Row("created the same on both sides: agree", {}, snap(a=MINE), snap(a=MINE), []),
    Row(
        "created differently on both sides: conflict",
        {},
        snap(a=MINE),
        snap(a=THEIRS),
        ["save-copy a", "upload a", "conflict a"],
    ),
    Row("dir created locally", {}, snap(d=D, d__x=MINE), {}, ["upload d", "upload d/x"]),
    Row(
        "dir created on both sides",
        {},
        snap(d=D, d__x=MINE),
        snap(d=D, d__y=THEIRS),
        ["upload d/x", "download d/y"],
    ),
    # --- initial-sync conflicts (ancestor conflict=True) ---------------------------------
    Row("initial conflict untouched stays", CONFLICTED, snap(a=BASE), snap(a=THEIRS), []),
    Row(
        "initial conflict, local edit: copy then upload",
        CONFLICTED,
        snap(a=MINE),
        snap(a=THEIRS),
        ["save-copy a", "upload a"],
    ),
    Row(
        "initial conflict, local delete: copy then delete",
        CONFLICTED,
        {},
        snap(a=THEIRS),
        ["save-copy a", "delete-remote a"],
    ),
    Row(
        "initial conflict, container edit: download",
        CONFLICTED,
        snap(a=BASE),
        snap(a=MINE),
        ["download a"],
    ),
    # --- directories ---------------------------------------------------------------------
    Row(
        "dir deleted locally: one deletion",
        TREE,
        {},
        snap(d=D, d__x=BASE, d__y=BASE),
        ["delete-remote d"],
    ),
    Row(
        "dir deleted in container: one deletion",
        TREE,
        snap(d=D, d__x=BASE, d__y=BASE),
        {},
        ["delete-local d"],
    ),
    Row(
        "dir deleted locally, file in it edited in container: restored",
        TREE,
        {},
        snap(d=D, d__x=THEIRS, d__y=BASE),
        ["download d", "download d/x", "download d/y"],
    ),
    Row(
        "dir deleted in container, file in it edited locally: restored",
        TREE,
        snap(d=D, d__x=MINE, d__y=BASE),
        {},
        ["upload d", "upload d/x", "upload d/y"],
    ),
    Row(
        "file in dir deleted locally, other file edited in container",
        TREE,
        snap(d=D, d__y=BASE),
        snap(d=D, d__x=BASE, d__y=THEIRS),
        ["delete-remote d/x", "download d/y"],
    ),
    Row(
        "file replaced by dir in container",
        A,
        snap(a=BASE),
        snap(a=D, a__x=THEIRS),
        ["delete-local a", "download a", "download a/x"],
    ),
    Row(
        "dir replaced by file locally",
        TREE,
        snap(d=MINE),
        snap(d=D, d__x=BASE, d__y=BASE),
        ["delete-remote d", "upload d"],
    ),
    # --- excludes and modes -------------------------------------------------------------
    Row(
        "excluded edits are ignored",
        A,
        snap(a=MINE),
        snap(a=THEIRS),
        [],
        rules=Rules(exclude=("a",)),
    ),
    Row(
        "upload-excluded local edit stays local",
        A,
        snap(a=MINE),
        snap(a=BASE),
        [],
        rules=Rules(upload_exclude=("a",)),
    ),
    Row(
        "upload-excluded: container edit downloads",
        A,
        snap(a=BASE),
        snap(a=THEIRS),
        ["download a"],
        rules=Rules(upload_exclude=("a",)),
    ),
    Row(
        "download-excluded container edit stays there",
        A,
        snap(a=BASE),
        snap(a=THEIRS),
        [],
        rules=Rules(download_exclude=("a",)),
    ),
    Row(
        "upload-excluded and both edited: both kept, conflict",
        A,
        snap(a=MINE),
        snap(a=THEIRS),
        ["conflict a"],
        rules=Rules(upload_exclude=("a",)),
    ),
    Row(
        "dir deleted locally holding upload-excluded files: dir kept",
        agreed(d=D, d__x=BASE, d__nm=BASE),
        {},
        snap(d=D, d__x=BASE, d__nm=BASE),
        ["delete-remote d/x"],
        rules=Rules(upload_exclude=("nm",)),
    ),
    Row(
        "dir restored in container; its upload-excluded file takes the container's deletion",
        TREE,
        snap(d=D, d__x=BASE, d__y=MINE),
        {},
        ["delete-local d/x", "upload d", "upload d/y"],
        rules=Rules(upload_exclude=("x",)),
    ),
    Row(
        "upload-only: container edit ignored", A, snap(a=BASE), snap(a=THEIRS), [], upload_only=True
    ),
    Row(
        "upload-only: both edited, local wins",
        A,
        snap(a=MINE),
        snap(a=THEIRS),
        ["save-copy a", "upload a", "conflict a"],
        upload_only=True,
    ),
    Row("download-only: local edit ignored", A, snap(a=MINE), snap(a=BASE), [], download_only=True),
    Row(
        "download-only: both edited, both kept",
        A,
        snap(a=MINE),
        snap(a=THEIRS),
        ["conflict a"],
        download_only=True,
    ),
    Row(
        "download-only: local edit never deleted",
        A,
        snap(a=MINE),
        {},
        ["conflict a"],
        download_only=True,
    ),
    # --- hints ---------------------------------------------------------------------------
    Row(
        "only hinted paths are planned",
        agreed(a=BASE, b=BASE),
        snap(a=MINE, b=MINE),
        snap(a=BASE, b=BASE),
        ["upload b"],
        paths=["b"],
    ),
    Row(
        "hint inside a new dir starts at the new dir",
        {},
        snap(n=D, n__m=D, n__m__f=MINE),
        {},
        ["upload n", "upload n/m", "upload n/m/f"],
        paths=["n/m/f"],
    ),
    Row(
        "root hint means everything",
        agreed(a=BASE, b=BASE),
        snap(a=MINE, b=MINE),
        snap(a=BASE, b=BASE),
        ["upload a", "upload b"],
        paths=[""],
    ),
    # --- clocks ---------------------------------------------------------------------------
    Row(
        "a same-size edit within the same second is a change, even at 1 s granularity",
        A,
        snap(a=Entry(FILE, 10, 100 * S + 5)),
        snap(a=BASE),
        ["upload a"],
        granularity=S,
    ),
    Row(
        "both changed to the same size within one second agree at 1 s granularity",
        A,
        snap(a=Entry(FILE, 20, 200 * S + 5)),
        snap(a=Entry(FILE, 20, 200 * S)),
        [],
        granularity=S,
    ),
    Row(
        "each side compares with its own recorded entry",
        {RelPath("a"): AncestorEntry(Entry(FILE, 10, 100 * S + 5), BASE)},
        snap(a=Entry(FILE, 10, 100 * S + 5)),
        snap(a=BASE),
        [],
    ),
]


def run_paths(row: Row) -> list[RelPath] | None:
    return None if row.paths is None else [RelPath(p) for p in row.paths]


def run(row: Row) -> Plan:
    return reconcile(
        row.ancestor,
        row.local,
        row.remote,
        run_paths(row),
        row.rules,
        upload_only=row.upload_only,
        download_only=row.download_only,
        granularity_ns=row.granularity,
    )


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_reconcile_rules(row: Row) -> None:
    plan = run(row)
    assert short(plan) == row.expect
    # Applying the plan and reconciling again finds nothing left to do.
    after = advance_ancestor(row.ancestor, plan.actions)
    local, remote = dict(row.local), dict(row.remote)
    for act in plan.changes():
        apply_one(act, local, remote)
    again = reconcile(
        after,
        local,
        remote,
        run_paths(row),
        row.rules,
        upload_only=row.upload_only,
        download_only=row.download_only,
    )
    assert again.is_empty(), again.describe()


def apply_one(act: object, local: dict[RelPath, Entry], remote: dict[RelPath, Entry]) -> None:
    def drop(side: dict[RelPath, Entry], p: RelPath) -> None:
        for k in [k for k in side if k == p or k.startswith(p + "/")]:
            del side[k]

    if isinstance(act, Upload):
        remote[act.path] = act.entry
    elif isinstance(act, Download):
        local[act.path] = act.entry
    elif isinstance(act, DeleteRemote):
        drop(remote, act.path)
    elif isinstance(act, DeleteLocal):
        drop(local, act.path)


def test_conflict_copy_upload_and_report_in_that_order() -> None:
    plan = reconcile(A, snap(a=MINE), snap(a=THEIRS), None, Rules())
    a = RelPath("a")
    assert plan.actions == (
        SaveConflictCopy(a, THEIRS, "container version replaced by the local one"),
        Upload(a, MINE, THEIRS, "changed on both sides: local version wins"),
        Conflict(a, MINE, THEIRS, BOTH_CHANGED, resolved=True),
    )


def test_expectations_are_the_other_sides_current_entry() -> None:
    a = RelPath("a")
    assert reconcile(A, snap(a=BASE), snap(a=THEIRS), None, Rules()).downloads == (
        Download(a, THEIRS, BASE, "changed in container"),
    )
    assert reconcile(A, {}, snap(a=BASE), None, Rules()).deletes_remote == (
        DeleteRemote(a, BASE, "deleted locally"),
    )


def test_both_deleted_drops_the_ancestor_entry() -> None:
    plan = reconcile(TREE, {}, {}, None, Rules())
    assert plan.is_empty()
    assert advance_ancestor(TREE, plan.actions) == {}


def test_digests_decide_equality_when_both_changed() -> None:
    mine = Entry(FILE, 20, 200 * S, digest="h")
    theirs = Entry(FILE, 20, 300 * S, digest="h")
    plan = reconcile(A, snap(a=mine), snap(a=theirs), None, Rules())
    assert plan.agreed == (Agree(RelPath("a"), mine, theirs, "same change on both sides"),)
    assert plan.changes() == ()


def test_unresolved_conflict_is_recorded_and_not_repeated() -> None:
    rules = Rules(upload_exclude=("a",))
    plan = reconcile(A, snap(a=MINE), snap(a=THEIRS), None, rules)
    after = advance_ancestor(A, plan.actions)
    assert after[RelPath("a")] == AncestorEntry(MINE, THEIRS, conflict=True)
    assert reconcile(after, snap(a=MINE), snap(a=THEIRS), None, rules).actions == ()


def test_mass_deletion_when_container_looks_empty() -> None:
    message = detect_mass_deletion(agreed(a=BASE), {}, Rules())
    assert message is not None and "empty" in message
    # Only excluded content left counts as empty too.
    assert detect_mass_deletion(agreed(a=BASE), snap(logs=D), Rules(exclude=("logs/",))) is not None


def test_mass_deletion_when_most_files_vanish_at_once() -> None:
    many = {RelPath(f"f{i}"): AncestorEntry(BASE, BASE) for i in range(MASS_MIN)}
    half = {k: BASE for k in list(many)[: MASS_MIN // 2]}
    assert detect_mass_deletion(many, half, Rules()) is None
    fewer = {k: BASE for k in list(many)[: MASS_MIN // 2 - 1]}
    message = detect_mass_deletion(many, fewer, Rules())
    assert message is not None and f"of {MASS_MIN}" in message


def test_no_mass_deletion_for_small_or_new_trees() -> None:
    assert detect_mass_deletion({}, {}, Rules()) is None
    small = {RelPath(f"f{i}"): AncestorEntry(BASE, BASE) for i in range(5)}
    assert detect_mass_deletion(small, {RelPath("f0"): BASE}, Rules()) is None
    # Excluded agreed files do not count.
    assert detect_mass_deletion(agreed(a=BASE), {}, Rules(exclude=("a",))) is None


def test_mass_deletion_of_the_local_side_is_detected_too() -> None:
    message = detect_mass_deletion(agreed(a=BASE), {}, Rules(), side="local")
    assert message is not None and "local folder" in message and "in the container" in message
    with pytest.raises(ValueError):
        detect_mass_deletion({}, {}, Rules(), side="elsewhere")


def test_ancestor_takes_the_entries_really_sent_and_written() -> None:
    a, b = RelPath("a"), RelPath("b")
    plan = reconcile(
        agreed(a=BASE, b=BASE), snap(a=MINE, b=MINE), snap(a=BASE, b=BASE), None, Rules()
    )
    coarse = Entry(FILE, 20, 200 * S)  # as the container reports it
    newer = Entry(FILE, 21, 201 * S)  # the local file changed again before it was read
    after = advance_ancestor(
        agreed(a=BASE, b=BASE), plan.actions, sent={a: newer}, written={a: coarse}, failed={b}
    )
    assert after[a] == AncestorEntry(newer, coarse)
    assert after[b] == AncestorEntry(BASE, BASE)  # failed: unchanged, retried next time
    # The failed path is planned again; the written one is settled.
    assert short(
        reconcile(after, snap(a=newer, b=MINE), snap(a=coarse, b=BASE), None, Rules())
    ) == ["upload b"]


def test_same_size_conflicts_are_offered_for_digests_then_agreed() -> None:
    mine, theirs = Entry(FILE, 20, 200 * S), Entry(FILE, 20, 300 * S)
    plan = reconcile(A, snap(a=mine), snap(a=theirs), None, Rules())
    assert short(plan) == ["save-copy a", "upload a", "conflict a"]
    assert digest_candidates(plan) == ("a",)
    equal = reconcile(
        A, snap(a=replace(mine, digest="h")), snap(a=replace(theirs, digest="h")), None, Rules()
    )
    assert equal.changes() == () and digest_candidates(equal) == ()
    other = reconcile(
        A, snap(a=replace(mine, digest="h")), snap(a=replace(theirs, digest="g")), None, Rules()
    )
    assert short(other) == short(plan) and digest_candidates(other) == ()
    # Different sizes cannot be equal: no digests asked.
    assert digest_candidates(reconcile(A, snap(a=MINE), snap(a=THEIRS), None, Rules())) == ()

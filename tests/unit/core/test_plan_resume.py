"""Table tests of a restart from the persisted state (``core.resume.plan_resume``).

Recorded paths follow the watch phase's three-way rules; paths with no record follow the
spec's initial-sync rules. Each row: the persisted ancestor, both sides now, the options, and
the expected changes as ``"verb path"`` strings in execution order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.core.test_reconcile import BASE, MINE, THEIRS, short, snap

from podsync.core.ancestor import AncestorEntry
from podsync.core.entry import DIR, FILE, Entry
from podsync.core.excludes import Rules
from podsync.core.initial import REMOTE_NEWER
from podsync.core.paths import RelPath
from podsync.core.plan import Conflict, Plan, advance_ancestor
from podsync.core.reconcile import BOTH_CHANGED
from podsync.core.resume import plan_resume

S = 10**9
D = Entry(DIR)
OLD = Entry(FILE, 5, 50 * S)  # older than BASE (an image's file)
NEW_L = Entry(FILE, 7, 400 * S)  # created locally while stopped (newest)
NEW_R = Entry(FILE, 8, 500 * S)  # created in the container while stopped (newer still)


def agreed(**entries: Entry) -> dict[RelPath, AncestorEntry]:
    return {p: AncestorEntry(e, e) for p, e in snap(**entries).items()}


@dataclass
class Row:
    name: str
    ancestor: dict[RelPath, AncestorEntry]
    local: dict[RelPath, Entry]
    remote: dict[RelPath, Entry]
    expect: list[str]
    download_on_initial_sync: bool = False
    excludes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


ROWS = [
    Row(
        "nothing changed while stopped",
        agreed(d=D, d__a=BASE, b=BASE),
        snap(d=D, d__a=BASE, b=BASE),
        snap(d=D, d__a=BASE, b=BASE),
        [],
    ),
    Row(
        "container edit while stopped is downloaded, not a conflict",
        agreed(a=BASE, b=BASE),
        snap(a=BASE, b=BASE),
        snap(a=THEIRS, b=BASE),
        ["download a"],
    ),
    Row(
        "local edit while stopped is uploaded",
        agreed(a=BASE),
        snap(a=MINE),
        snap(a=BASE),
        ["upload a"],
    ),
    Row(
        "deleted locally while stopped: deleted in the container",
        agreed(a=BASE, b=BASE),
        snap(b=BASE),
        snap(a=BASE, b=BASE),
        ["delete-remote a"],
    ),
    Row(
        "deleted in the container while stopped: deleted locally (trash)",
        agreed(a=BASE, b=BASE),
        snap(a=BASE, b=BASE),
        snap(b=BASE),
        ["delete-local a"],
    ),
    Row(
        "changed on both sides: a conflict, as in watch mode",
        agreed(a=BASE),
        snap(a=MINE),
        snap(a=THEIRS),
        ["save-copy a", "upload a", "conflict a"],
        conflicts=[BOTH_CHANGED],
    ),
    Row(
        "no record, container only: the spec deletes it",
        agreed(a=BASE),
        snap(a=BASE),
        snap(a=BASE, n=NEW_R),
        ["delete-remote n"],
    ),
    Row(
        "no record, container only, downloadOnInitialSync: downloaded",
        agreed(a=BASE),
        snap(a=BASE),
        snap(a=BASE, n=NEW_R),
        ["download n"],
        download_on_initial_sync=True,
    ),
    Row(
        "no record, local only: uploaded",
        agreed(a=BASE),
        snap(a=BASE, n=NEW_L),
        snap(a=BASE),
        ["upload n"],
    ),
    Row(
        "no record, both sides, container newer: the spec's conflict, nothing moves",
        agreed(a=BASE),
        snap(a=BASE, n=NEW_L),
        snap(a=BASE, n=NEW_R),
        ["conflict n"],
        conflicts=[REMOTE_NEWER],
    ),
    Row(
        "no record, both sides, local newer: uploaded",
        agreed(a=BASE),
        snap(a=BASE, n=NEW_R),
        snap(a=BASE, n=OLD),
        ["upload n"],
    ),
    Row(
        "a new container directory inside a recorded one: deleted as a unit",
        agreed(d=D, d__a=BASE),
        snap(d=D, d__a=BASE),
        snap(d=D, d__a=BASE, d__n=D, d__n__x=NEW_R),
        ["delete-remote d/n"],
    ),
    Row(
        "recorded directory deleted locally, a new container file inside: restored (as in"
        " the watch phase, modification beats deletion; the container keeps no trash)",
        agreed(d=D, d__a=BASE, b=BASE),
        snap(b=BASE),
        snap(d=D, d__a=BASE, d__n=NEW_R, b=BASE),
        ["download d", "download d/a", "download d/n"],
    ),
    Row(
        "recorded directory deleted in the container, a new local file inside: uploaded,"
        " not trashed",
        agreed(d=D, d__a=BASE, b=BASE),
        snap(d=D, d__a=BASE, d__mine=NEW_L, b=BASE),
        snap(b=BASE),
        ["upload d", "upload d/a", "upload d/mine"],
    ),
    Row(
        "a recorded directory deleted locally with nothing new inside: one deletion",
        agreed(d=D, d__a=BASE, b=BASE),
        snap(b=BASE),
        snap(d=D, d__a=BASE, b=BASE),
        ["delete-remote d"],
    ),
    Row(
        "excluded paths never move, recorded or not",
        agreed(a=BASE),
        snap(a=BASE, logs=D, logs__x=NEW_L),
        snap(a=BASE, logs=D, logs__y=NEW_R),
        [],
        excludes=["logs/"],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_resume_rules(row: Row) -> None:
    result = plan_resume(
        row.ancestor,
        row.local,
        row.remote,
        Rules(tuple(row.excludes)),
        download_on_initial_sync=row.download_on_initial_sync,
    )
    assert not result.needs_digest
    assert short(result.plan) == row.expect
    reasons = [a.reason for a in result.plan.actions if isinstance(a, Conflict)]
    assert reasons == row.conflicts


def test_unrecorded_same_size_asks_for_digests_then_agrees() -> None:
    same_size = Entry(FILE, BASE.size, 999 * S)
    args = (agreed(a=BASE), snap(a=BASE, n=BASE), snap(a=BASE, n=same_size), Rules(()))
    first = plan_resume(*args, download_on_initial_sync=False)
    assert first.needs_digest == ("n",)
    again = plan_resume(*args, download_on_initial_sync=False, digests={"n": ("x", "x")})
    assert not again.needs_digest
    assert short(again.plan) == []


# -- properties -------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d/x", "d/y"])
CONTENT = st.sampled_from([BASE, MINE, THEIRS, OLD])


def _tree(files: dict[str, Entry]) -> dict[RelPath, Entry]:
    out: dict[RelPath, Entry] = {}
    for path, entry in files.items():
        if "/" in path:
            out[RelPath(path.split("/")[0])] = D
        out[RelPath(path)] = entry
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(NAMES, CONTENT),
    st.dictionaries(NAMES, CONTENT),
    st.dictionaries(NAMES, CONTENT),
    st.booleans(),
)
def test_resume_then_nothing_left(
    agreed_files: dict[str, Entry],
    local_files: dict[str, Entry],
    remote_files: dict[str, Entry],
    fetch: bool,
) -> None:
    """After the resume plan ran (assuming every action succeeded), planning again from the
    advanced state changes nothing on either side: one pass converges."""
    tree = _tree(agreed_files)
    ancestor = {p: AncestorEntry(e, e) for p, e in tree.items()}
    local, remote = _tree(local_files), _tree(remote_files)
    rules = Rules(())
    result = plan_resume(ancestor, local, remote, rules, download_on_initial_sync=fetch)
    if result.needs_digest:
        result = plan_resume(
            ancestor,
            local,
            remote,
            rules,
            download_on_initial_sync=fetch,
            digests={p: ("l", "r") for p in result.needs_digest},
        )
    after = advance_ancestor(ancestor, result.plan.actions)
    new_local, new_remote = _apply(result.plan, local, remote)
    again = plan_resume(after, new_local, new_remote, rules, download_on_initial_sync=fetch)
    assert short(again.plan) == [] or all(s.startswith("conflict") for s in short(again.plan))


def _apply(
    plan: Plan, local: dict[RelPath, Entry], remote: dict[RelPath, Entry]
) -> tuple[dict[RelPath, Entry], dict[RelPath, Entry]]:
    from podsync.core.plan import DeleteLocal, DeleteRemote, Download, Upload

    lo, re = dict(local), dict(remote)
    for act in plan.actions:
        if isinstance(act, Upload):
            re[act.path] = act.entry
        elif isinstance(act, Download):
            lo[act.path] = act.entry
        elif isinstance(act, DeleteRemote):
            for k in [k for k in re if k == act.path or k.startswith(act.path + "/")]:
                del re[k]
        elif isinstance(act, DeleteLocal):
            for k in [k for k in lo if k == act.path or k.startswith(act.path + "/")]:
                del lo[k]
    return lo, re

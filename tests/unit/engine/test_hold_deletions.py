"""Deletions wait for a burst to settle (``engine.watch.hold_deletions``): which actions run
at once and which paths are held."""

from __future__ import annotations

from podsync.core.entry import DIR, FILE, Entry
from podsync.core.paths import RelPath
from podsync.core.plan import Agree, DeleteLocal, DeleteRemote, Plan, SaveConflictCopy, Upload
from podsync.engine.watch import hold_deletions

F = Entry(FILE, 1, 1)
D = Entry(DIR)
P = RelPath


def test_writes_run_and_pure_deletions_wait() -> None:
    plan = Plan.of(
        [
            Upload(P("a"), F, None),
            DeleteRemote(P("gone"), D),
            Agree(P("gone/x"), None, None),
            SaveConflictCopy(P("old"), F),
            DeleteRemote(P("old"), F),
            DeleteLocal(P("theirs"), F),
        ]
    )
    now, held = hold_deletions(plan)
    assert held == {"gone", "old", "theirs"}
    assert [type(a).__name__ + " " + a.path for a in now.actions] == ["Upload a"]


def test_a_kind_change_runs_at_once() -> None:
    plan = Plan.of([DeleteRemote(P("k"), F), Upload(P("k"), D, None)])
    now, held = hold_deletions(plan)
    assert held == set()
    assert now == plan

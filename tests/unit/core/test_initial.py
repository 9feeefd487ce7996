"""Table tests of the initial-sync rules (spec FAQ "How does the initial sync work?").

Each row names its fixture entries (Mutagen style) and lists the expected plan as short
``"verb path"`` strings in execution order; records (Agree/Keep) are checked separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from podsync.core.ancestor import AncestorEntry
from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.excludes import Rules
from podsync.core.initial import REMOTE_NEWER, InitialResult, plan_initial_sync
from podsync.core.paths import RelPath
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

S = 10**9
OLD = Entry(FILE, 10, 100 * S)  # a file written long ago
NEW = Entry(FILE, 10, 200 * S)  # the same size, written later
NEW_BIG = Entry(FILE, 20, 200 * S)  # a different size, written later
OLD_BIG = Entry(FILE, 20, 100 * S)
OLD_EXE = Entry(FILE, 10, 100 * S, executable=True)
OLD_FRACTION = Entry(FILE, 10, 100 * S + 123_456_789)  # OLD with sub-second precision
D = Entry(DIR)
LINK_A = Entry(LINK, mtime_ns=100 * S, target="a")
LINK_B_NEW = Entry(LINK, mtime_ns=200 * S, target="b")
LINK_B_OLD = Entry(LINK, mtime_ns=50 * S, target="b")

VERBS = {
    Upload: "upload",
    Download: "download",
    DeleteRemote: "delete-remote",
    DeleteLocal: "delete-local",
    SaveConflictCopy: "save-copy",
    Conflict: "conflict",
}


def short(plan: Plan) -> list[str]:
    """The plan without its records, as ``"verb path"``."""
    return [f"{VERBS[type(a)]} {a.path}" for a in plan.actions if type(a) in VERBS]


def snap(**entries: Entry) -> dict[RelPath, Entry]:
    """Snapshot from keyword arguments; ``__`` in a name stands for ``/``."""
    return {RelPath(k.replace("__", "/")): v for k, v in entries.items()}


@dataclass
class Row:
    name: str
    local: Mapping[RelPath, Entry]
    remote: Mapping[RelPath, Entry]
    expect: list[str]
    rules: Rules = field(default_factory=Rules)
    download: bool = False
    upload_only: bool = False
    download_only: bool = False
    granularity: int = 1
    digests: Mapping[RelPath, tuple[str | None, str | None]] = field(default_factory=dict)
    needs_digest: tuple[str, ...] = ()


ROWS = [
    # --- the four spec rules -----------------------------------------------------------
    Row("local only file is uploaded", snap(a=OLD), {}, ["upload a"]),
    Row("local newer is uploaded", snap(a=NEW_BIG), snap(a=OLD), ["upload a"]),
    Row("remote newer changes nothing, reported", snap(a=OLD), snap(a=NEW_BIG), ["conflict a"]),
    Row("remote only file is deleted", {}, snap(a=OLD), ["delete-remote a"]),
    Row(
        "remote only with downloadOnInitialSync is downloaded",
        {},
        snap(a=OLD),
        ["download a"],
        download=True,
    ),
    Row("equal files agree", snap(a=OLD), snap(a=OLD), []),
    # --- excludes ----------------------------------------------------------------------
    Row(
        "excludePaths protects remote-only from deletion",
        {},
        snap(a=OLD),
        [],
        rules=Rules(exclude=("a",)),
    ),
    Row(
        "uploadExcludePaths protects remote-only from deletion",
        {},
        snap(a=OLD),
        [],
        rules=Rules(upload_exclude=("a",)),
    ),
    Row(
        "downloadExcludePaths does not protect remote-only from deletion",
        {},
        snap(a=OLD),
        ["delete-remote a"],
        rules=Rules(download_exclude=("a",)),
    ),
    Row(
        "downloadOnInitialSync skips downloadExcludePaths, never deletes them",
        {},
        snap(a=OLD, b=OLD),
        ["download b"],
        rules=Rules(download_exclude=("a",)),
        download=True,
    ),
    Row(
        "downloadOnInitialSync skips excludePaths",
        {},
        snap(a=OLD, b=OLD),
        ["download b"],
        rules=Rules(exclude=("a",)),
        download=True,
    ),
    Row(
        "downloadOnInitialSync still downloads uploadExcludePaths",
        {},
        snap(nm=D, nm__x=OLD),
        ["download nm", "download nm/x"],
        rules=Rules(upload_exclude=("nm/",)),
        download=True,
    ),
    Row(
        "uploadExcludePaths blocks local-only upload",
        snap(a=OLD),
        {},
        [],
        rules=Rules(upload_exclude=("a",)),
    ),
    Row("excludePaths blocks local-only upload", snap(a=OLD), {}, [], rules=Rules(exclude=("a",))),
    Row(
        "excluded paths never appear even when both differ",
        snap(a=NEW_BIG),
        snap(a=OLD),
        [],
        rules=Rules(exclude=("a",)),
    ),
    Row(
        "local newer but upload-excluded is a conflict, nothing moves",
        snap(a=NEW_BIG),
        snap(a=OLD),
        ["conflict a"],
        rules=Rules(upload_exclude=("a",)),
    ),
    # --- same size, different mtime: digests decide ------------------------------------
    Row(
        "same size, other mtime, digests unknown", snap(a=NEW), snap(a=OLD), [], needs_digest=("a",)
    ),
    Row(
        "same size, equal digests agree",
        snap(a=NEW),
        snap(a=OLD),
        [],
        digests={RelPath("a"): ("x", "x")},
    ),
    Row(
        "same size, different digests, local newer uploads",
        snap(a=NEW),
        snap(a=OLD),
        ["upload a"],
        digests={RelPath("a"): ("x", "y")},
    ),
    Row(
        "same size, different digests, remote newer conflicts",
        snap(a=OLD),
        snap(a=NEW),
        ["conflict a"],
        digests={RelPath("a"): ("x", "y")},
    ),
    Row(
        "digest None (not a file any more) counts as different",
        snap(a=NEW),
        snap(a=OLD),
        ["upload a"],
        digests={RelPath("a"): (None, None)},
    ),
    # --- granularity --------------------------------------------------------------------
    Row(
        "sub-second difference is equal at 1 s granularity",
        snap(a=OLD_FRACTION),
        snap(a=OLD),
        [],
        granularity=S,
    ),
    Row(
        "sub-second difference asks digests at ns granularity",
        snap(a=OLD_FRACTION),
        snap(a=OLD),
        [],
        needs_digest=("a",),
    ),
    Row(
        "same mtime at the granularity but other size: local wins",
        snap(a=Entry(FILE, 11, 100 * S + 5)),
        snap(a=OLD),
        ["upload a"],
        granularity=S,
    ),
    Row("exec bit differs only: local wins", snap(a=OLD_EXE), snap(a=OLD), ["upload a"]),
    # --- type mismatches ---------------------------------------------------------------
    Row("local link newer than remote file: upload", snap(a=LINK_B_NEW), snap(a=OLD), ["upload a"]),
    Row(
        "remote link newer than local file: conflict",
        snap(a=OLD),
        snap(a=LINK_B_NEW),
        ["conflict a"],
    ),
    Row(
        "links with other targets: local newer uploads",
        snap(a=LINK_B_NEW),
        snap(a=LINK_A),
        ["upload a"],
    ),
    Row("equal links agree", snap(a=LINK_A), snap(a=LINK_A), []),
    Row(
        "local dir replaces remote file (even a newer one)",
        snap(a=D, a__x=OLD),
        snap(a=NEW),
        ["delete-remote a", "upload a", "upload a/x"],
    ),
    Row(
        "local file replaces remote dir when all of it may be deleted",
        snap(a=OLD),
        snap(a=D, a__x=NEW),
        ["delete-remote a", "upload a"],
    ),
    Row(
        "local file vs remote dir holding protected paths: conflict, both kept",
        snap(a=OLD),
        snap(a=D, a__x=NEW),
        ["conflict a"],
        rules=Rules(upload_exclude=("x",)),
    ),
    Row(
        "local file vs remote dir with downloadOnInitialSync: conflict, both kept",
        snap(a=OLD),
        snap(a=D, a__x=NEW),
        ["conflict a"],
        download=True,
    ),
    # --- directory trees ---------------------------------------------------------------
    Row(
        "local-only tree: dirs before their children",
        snap(a=D, a__b=D, a__b__c=OLD, a__z=OLD),
        {},
        ["upload a", "upload a/b", "upload a/z", "upload a/b/c"],
    ),
    Row("remote-only tree: one deletion", {}, snap(a=D, a__b=D, a__b__c=OLD), ["delete-remote a"]),
    Row(
        "remote-only tree holding protected paths: dir kept, rest deleted",
        {},
        snap(a=D, a__keep=OLD, a__b=D, a__b__c=OLD),
        ["delete-remote a/b"],
        rules=Rules(upload_exclude=("keep",)),
    ),
    Row(
        "remote-only tree downloaded parents first",
        {},
        snap(a=D, a__b=D, a__b__c=OLD),
        ["download a", "download a/b", "download a/b/c"],
        download=True,
    ),
    Row(
        "dirs on both sides agree and recurse",
        snap(a=D, a__new=OLD, a__same=OLD),
        snap(a=D, a__gone=OLD, a__same=OLD),
        ["delete-remote a/gone", "upload a/new"],
    ),
    Row(
        "excluded dir's content never appears",
        snap(a=D, a__x=NEW_BIG),
        snap(a=D, a__x=OLD, a__y=OLD),
        [],
        rules=Rules(exclude=("a/",)),
    ),
    # --- modes ---------------------------------------------------------------------------
    Row("upload-only: remote-only deleted", {}, snap(a=OLD), ["delete-remote a"], upload_only=True),
    Row(
        "upload-only with downloadOnInitialSync: remote-only kept",
        {},
        snap(a=OLD),
        [],
        upload_only=True,
        download=True,
    ),
    Row(
        "upload-only: remote newer stays a conflict",
        snap(a=OLD),
        snap(a=NEW_BIG),
        ["conflict a"],
        upload_only=True,
    ),
    Row(
        "download-only: remote-only downloaded", {}, snap(a=OLD), ["download a"], download_only=True
    ),
    Row("download-only: local-only left alone", snap(a=OLD), {}, [], download_only=True),
    Row(
        "download-only: remote newer downloaded",
        snap(a=OLD),
        snap(a=NEW_BIG),
        ["download a"],
        download_only=True,
    ),
    Row(
        "download-only: local newer is a conflict",
        snap(a=NEW_BIG),
        snap(a=OLD),
        ["conflict a"],
        download_only=True,
    ),
    Row(
        "download-only: dir vs file is a conflict",
        snap(a=D, a__x=OLD),
        snap(a=NEW),
        ["conflict a"],
        download_only=True,
    ),
]


def run(row: Row) -> InitialResult:
    return plan_initial_sync(
        row.local,
        row.remote,
        row.rules,
        download_on_initial_sync=row.download,
        upload_only=row.upload_only,
        download_only=row.download_only,
        granularity_ns=row.granularity,
        digests=row.digests,
    )


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_initial_rules(row: Row) -> None:
    result = run(row)
    assert short(result.plan) == row.expect
    assert result.needs_digest == tuple(RelPath(p) for p in row.needs_digest)


def test_remote_newer_conflict_is_recorded_with_the_spec_reason() -> None:
    result = plan_initial_sync(
        snap(a=OLD), snap(a=NEW_BIG), Rules(), download_on_initial_sync=False
    )
    (conflict,) = result.plan.conflicts
    assert conflict.reason == REMOTE_NEWER and not conflict.resolved
    assert conflict.local == OLD and conflict.remote == NEW_BIG
    assert result.ancestor == {RelPath("a"): AncestorEntry(OLD, NEW_BIG, conflict=True)}
    assert result.plan.changes() == ()


def test_expectations_carry_what_the_other_side_holds() -> None:
    plan = plan_initial_sync(
        snap(a=NEW_BIG, b=OLD), snap(a=OLD, c=OLD), Rules(), download_on_initial_sync=False
    ).plan
    by_path = {a.path: a for a in plan.changes()}
    assert by_path[RelPath("a")] == Upload(RelPath("a"), NEW_BIG, OLD, "local newer")
    assert by_path[RelPath("b")] == Upload(RelPath("b"), OLD, None, "local only")
    assert by_path[RelPath("c")] == DeleteRemote(RelPath("c"), OLD, "container only")


def test_equal_content_by_digest_is_agreed_with_each_sides_own_entry() -> None:
    result = plan_initial_sync(
        snap(a=NEW),
        snap(a=OLD),
        Rules(),
        download_on_initial_sync=False,
        digests={RelPath("a"): ("h", "h")},
    )
    assert result.plan.agreed == (Agree(RelPath("a"), NEW, OLD, "same content (SHA-256)"),)
    assert result.ancestor[RelPath("a")] == AncestorEntry(NEW, OLD)


def test_protected_remote_only_paths_are_recorded_as_kept() -> None:
    """So the watch phase does not later mistake them for new container files."""
    rules = Rules(upload_exclude=("nm/",))
    result = plan_initial_sync({}, snap(nm=D, nm__x=OLD), rules, download_on_initial_sync=False)
    assert result.plan.is_empty()
    assert {k.path for k in result.plan.kept} == {"nm", "nm/x"}
    assert result.ancestor[RelPath("nm/x")] == AncestorEntry(None, OLD)


def test_ancestor_after_plan_holds_every_synced_path() -> None:
    local = snap(a=D, a__x=OLD, b=NEW_BIG, c=OLD)
    remote = snap(a=D, b=OLD, c=OLD, gone=OLD)
    result = plan_initial_sync(local, remote, Rules(), download_on_initial_sync=False)
    assert result.ancestor == {
        RelPath("a"): AncestorEntry(D, D),
        RelPath("a/x"): AncestorEntry(OLD, OLD),
        RelPath("b"): AncestorEntry(NEW_BIG, NEW_BIG),
        RelPath("c"): AncestorEntry(OLD, OLD),
    }


def test_upload_only_and_download_only_together_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_initial_sync(
            {}, {}, Rules(), download_on_initial_sync=False, upload_only=True, download_only=True
        )


def test_summary_and_dry_run_lines() -> None:
    local = snap(a=Entry(FILE, 1229, 200 * S), b=D)
    remote = snap(a=OLD, gone=OLD, newer=NEW_BIG)
    result = plan_initial_sync(
        {**local, RelPath("newer"): OLD}, remote, Rules(), download_on_initial_sync=False
    )
    assert result.plan.summary() == "upload 2 (1.2 KiB), delete remote 1, conflicts 1"
    assert result.plan.describe() == [
        "delete remote gone (10 B, container only)",
        "upload        a (1.2 KiB, local newer)",
        "upload        b (dir, local only)",
        f"conflict      newer (local 10 B, container 20 B, {REMOTE_NEWER})",
    ]
    assert Plan().summary() == "nothing to do"


def test_needs_digest_then_second_call_completes_the_plan() -> None:
    local, remote = snap(a=NEW, b=OLD_BIG), snap(a=OLD)
    first = plan_initial_sync(local, remote, Rules(), download_on_initial_sync=False)
    assert first.needs_digest == ("a",) and short(first.plan) == ["upload b"]
    second = plan_initial_sync(
        local, remote, Rules(), download_on_initial_sync=False, digests={RelPath("a"): ("h", "h")}
    )
    assert second.needs_digest == () and short(second.plan) == ["upload b"]
    assert RelPath("a") in second.ancestor


def test_keep_records_do_not_count_as_work() -> None:
    plan = Plan((Keep(RelPath("a"), None, OLD, "x"), Agree(RelPath("b"), OLD, OLD)))
    assert plan.is_empty() and plan.changes() == () and plan.summary() == "nothing to do"


def test_plan_order_stages_and_redundant_deletions() -> None:
    p = RelPath
    acts: list[Action] = [
        Agree(p("z"), OLD, OLD),
        Upload(p("n/m"), OLD, None),
        DeleteRemote(p("d/e"), OLD),
        Upload(p("n"), D, None),
        DeleteLocal(p("d/e"), OLD),  # other side: not redundant
        DeleteRemote(p("d"), D),
        DeleteRemote(p("x/y/z"), OLD),
        DeleteRemote(p("x/y"), D),
        SaveConflictCopy(p("q"), NEW),
        Conflict(p("q"), OLD, NEW, "r", resolved=True),
        Upload(p("q"), OLD, NEW),
    ]
    plan = Plan.of(acts)
    assert short(plan) == [
        "save-copy q",
        "delete-local d/e",
        "delete-remote x/y",
        "delete-remote d",
        "upload n",
        "upload q",
        "upload n/m",
        "conflict q",
    ]
    assert plan.actions[-1] == Agree(p("z"), OLD, OLD)


def test_describe_names_every_action() -> None:
    p = RelPath("p")
    plan = Plan(
        (
            SaveConflictCopy(p, OLD, "why"),
            DeleteLocal(p, LINK_A, "gone"),
            Download(p, D, None, "new"),
            Keep(p, None, OLD, "kept"),
        )
    )
    assert plan.describe(verbose=True) == [
        "save copy     p (10 B, why)",
        "delete local  p (link -> a, gone)",
        "download      p (dir, new)",
        "keep          p (local absent, container 10 B, kept)",
    ]
    assert plan.describe() == plan.describe(verbose=True)[:3]
    assert plan.summary() == "download 1 (0 B), delete local 1, conflict copies 1"

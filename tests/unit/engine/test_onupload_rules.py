"""onUpload commands, the pure part: which uploaded paths trigger which command (gitignore
matching relative to the sync root), and the schedule of runs (rounds in the order written,
never two runs of one command at once, never a needed run dropped)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podsync.core.entry import DIR, FILE, Entry
from podsync.core.plan import DeleteRemote, Plan, Upload
from podsync.engine.executor import Outcome
from podsync.engine.onupload import Schedule, Triggers, short, uploaded_paths
from podsync.engine.spec import UploadCommand


@dataclass(frozen=True)
class Row:
    id: str
    on_change: tuple[str, ...] | None
    changed: tuple[tuple[str, bool], ...]
    runs: bool


ROWS = [
    Row("root-file", ("/package.json",), (("package.json", False),), True),
    Row("root-file-not-below", ("/package.json",), (("web/package.json", False),), False),
    Row("basename-anywhere", ("package.json",), (("web/package.json", False),), True),
    Row("other-file", ("/package.json",), (("src/app.js", False),), False),
    Row("glob", ("src/**/*.proto",), (("src/a/b/x.proto", False),), True),
    Row("glob-other-ext", ("src/**/*.proto",), (("src/a/b/x.py", False),), False),
    Row("folder-pattern-file-below", ("/deps/",), (("deps/a/b.txt", False),), True),
    Row("folder-pattern-the-folder", ("/deps/",), (("deps", True),), True),
    Row("folder-only-pattern-a-file", ("/deps/",), (("deps", False),), False),
    Row("negation", ("*.js", "!vendor.js"), (("vendor.js", False),), False),
    Row("negation-other", ("*.js", "!vendor.js"), (("app.js", False),), True),
    Row("any-of-many", ("/package.json",), (("a", False), ("package.json", False)), True),
    Row("no-onChange-any-upload", None, (("whatever/x", False),), True),
    Row("no-onChange-nothing-uploaded", None, (), False),
    Row("non-ascii", ("/données/*.txt",), (("données/é.txt", False),), True),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_which_uploads_trigger_a_command(row: Row) -> None:
    triggers = Triggers([UploadCommand("true", row.on_change)])
    hits = triggers.match(list(row.changed))
    assert (0 in hits) == row.runs


def test_each_command_is_matched_on_its_own_and_names_the_first_path() -> None:
    triggers = Triggers([
        UploadCommand("npm install", ("/package.json",)),
        UploadCommand("make", ("*.c",)),
        UploadCommand("date", None),
    ])  # fmt: skip
    changed = [("README.md", False), ("package.json", False), ("lib/a.c", False)]
    assert triggers.match(changed) == {0: "package.json", 1: "lib/a.c", 2: "README.md"}


def test_uploaded_paths_are_writes_and_deletions_in_the_container() -> None:
    f, d = Entry(FILE, 3, 1), Entry(DIR)
    plan = Plan((
        DeleteRemote("old", d),
        DeleteRemote("gone.txt", f),
        DeleteRemote("swap", f),
        Upload("new", d, None),
        Upload("new/a.txt", f, None),
        Upload("swap", d, None),
    ))  # fmt: skip
    # what really happened (a write that hit a problem is not in the outcome)
    out = Outcome(uploaded=["new", "swap"], deleted_remote=["old", "gone.txt", "swap"])
    assert uploaded_paths(plan, out) == [
        ("old", True),
        ("gone.txt", False),
        ("swap", True),  # deleted as a file, written as a folder: the write's kind
        ("new", True),
        ("swap", True),
    ]


def test_commands_are_shown_on_one_line() -> None:
    assert short("npm install") == "`npm install`"
    assert short("npm ci\nnpm run build\n") == "`npm ci ...`"
    assert short("x" * 100, width=10) == "`xxxxxxx...`"


# -------------------------------------------------------------------- schedule


def drain(schedule: Schedule) -> list[int]:
    """Run everything that is due, in order."""
    ran = []
    while (index := schedule.take()) is not None:
        ran.append(index)
        schedule.finished()
    return ran


def test_held_until_released_then_once_each_in_the_order_written() -> None:
    s = Schedule()
    s.need([2, 0])
    s.need([0, 1])
    assert s.take() is None  # the first pass is not over
    s.held = False
    assert drain(s) == [0, 1, 2]
    assert s.idle


def test_a_need_while_running_runs_once_more_after_the_round() -> None:
    s = Schedule()
    s.held = False
    s.need([0, 1])
    assert s.take() == 0
    s.need([0])
    s.need([0])
    assert s.take() is None  # never two at once
    s.finished()
    assert drain(s) == [1, 0]


def test_a_need_for_a_waiting_command_adds_nothing() -> None:
    s = Schedule()
    s.held = False
    s.need([0, 1, 2])
    assert s.take() == 0
    s.need([2])  # 2 has not started: its run comes after this batch
    s.finished()
    assert drain(s) == [1, 2]


def test_a_need_for_one_already_run_in_this_round_comes_back() -> None:
    s = Schedule()
    s.held = False
    s.need([0, 1])
    assert s.take() == 0
    s.finished()
    assert s.take() == 1
    s.need([0])
    s.finished()
    assert drain(s) == [0]


def test_interrupted_runs_first_again() -> None:
    s = Schedule()
    s.held = False
    s.need([0, 1])
    assert s.take() == 0
    s.held = True  # the connection ended while 0 ran
    s.interrupted()
    assert s.take() is None
    s.held = False
    assert drain(s) == [0, 1]


Op = tuple[str, tuple[int, ...]]
OPS = st.one_of(
    st.tuples(st.just("need"), st.lists(st.integers(0, 3), max_size=4).map(tuple)),
    st.tuples(st.sampled_from(["take", "finish", "hold", "release", "interrupt"]), st.just(())),
)


@settings(max_examples=500, deadline=None)
@given(ops=st.lists(OPS, max_size=40))
def test_every_need_is_served_by_a_run_that_starts_after_it(ops: list[Op]) -> None:
    """Whatever happens, at the end (released, drained): every command needed at step t had a
    run that started after step t and finished; never two runs at once."""
    s = Schedule()
    owed: dict[int, list[int]] = {}  # command -> steps of its needs not served yet
    started: dict[int, int] = {}  # command -> the step its current run started

    def take(step: int) -> None:
        index = s.take()
        if index is not None:
            assert not started, "two runs at once"
            started[index] = step

    def finish() -> None:
        if s.running is not None:
            begun = started.pop(s.running)
            owed[s.running] = [t for t in owed.get(s.running, []) if t >= begun]
            s.finished()

    for step, (op, args) in enumerate(ops):
        if op == "need":
            for index in args:
                owed.setdefault(index, []).append(step)
            s.need(args)
        elif op == "take":
            take(step)
        elif op == "finish":
            finish()
        elif op == "hold":
            s.held = True
        elif op == "release":
            s.held = False
        elif s.running is not None:  # interrupt: that run does not count
            started.pop(s.running)
            s.interrupted()
    s.held = False
    for step in range(len(ops), len(ops) + 20):
        finish()
        take(step)
    assert s.idle and not started
    assert {k: v for k, v in owed.items() if v} == {}, "needs never served"

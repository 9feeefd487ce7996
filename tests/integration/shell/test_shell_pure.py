"""The shell agent's pure parts: pattern translation, listing parser, baseline diffs."""

from __future__ import annotations

import pytest

from podsync.core.entry import DIR, Entry
from podsync.core.paths import RelPath
from podsync.engine.shell.baseline import Baseline, minimal, signatures
from podsync.engine.shell.listing import Record, parse_records, to_snapshot
from podsync.engine.shell.poller import Poller, _Parser
from podsync.engine.shell.scripts import prune_tests
from podsync.errors import AgentError, ProtocolError, UnsafePath


@pytest.mark.parametrize(
    ("patterns", "tests"),
    [
        (["node_modules/"], ["-name", "node_modules"]),
        (["*.egg-info"], ["-name", "*.egg-info"]),
        (["**/cache"], ["-name", "cache"]),
        (["/build", "more/logs/"], ["-path", "./build", "-o", "-path", "./more/logs"]),
        (["a/*/b", "[ab]", "x\\*", "**/a/b", "a/**", "#c", "trail "], []),  # not exact in find
        (["logs/", "!logs/keep", "tmp/"], ["-name", "tmp"]),  # before a negation: unused
        (["!x", "y"], ["-name", "y"]),
    ],
)
def test_only_exactly_translatable_patterns_prune_in_the_container(
    patterns: list[str], tests: list[str]
) -> None:
    assert prune_tests(patterns) == tests


def test_listing_parser_handles_any_name_and_refuses_garbage() -> None:
    raw = (
        b"41ed 4096 1 ./d//\n"
        b"81a4 3 1700000000 ./d/a b\nc//\n"
        b"81ed 0 5 ./run//\n"
        b"a1ff 6 9 ./l//\nd/a b\n\n"  # symlink: its 6-byte target (with a newline) follows
        b"=END\n"
    )
    records, pos, marker = parse_records(raw, links=True, final=False)
    assert marker and raw[pos:] == b"=END\n"
    assert [r.name for r in records] == [b"./d", b"./d/a b\nc", b"./run", b"./l"]
    assert records[3].target == b"d/a b\n"
    snap = to_snapshot(records, lambda p, d: False, lambda m: None)
    assert snap[RelPath("d")] == Entry(DIR)
    assert snap[RelPath("run")].executable and snap[RelPath("d/a b\nc")].size == 3
    for bad in (b"zz 1 2 ./x//\n", b"81a4 1 2 ./x\n"):
        with pytest.raises(ProtocolError):
            parse_records(bad, links=True, final=True)
    for escaping in (b"81a4 1 2 ./../x//\n", b"81a4 1 2 /etc/x//\n"):
        records, _, _ = parse_records(escaping, links=True, final=True)
        with pytest.raises((UnsafePath, ProtocolError)):
            to_snapshot(records, lambda p, d: False, lambda m: None)


def test_incomplete_input_waits_for_more() -> None:
    whole = b"81a4 3 1700000000 ./abc//\n"
    for cut in range(1, len(whole)):
        records, pos, marker = parse_records(whole[:cut], links=True, final=False)
        assert (records, pos, marker) == ([], 0, False)


def test_baseline_sees_a_change_undone_between_two_polls() -> None:
    listing_empty: dict[RelPath, tuple[object, ...]] = {}
    base = Baseline()
    base.scanned([], {})
    assert base.listing(listing_empty) == []
    written, _, _ = parse_records(b"81a4 1 5 ./f//\n", links=True, final=True)
    base.note(written, {RelPath("f")})  # our upload
    assert base.tick() == ["f"]  # the loop saw no change: f vanished again
    assert base.tick() == []
    base.note(written, {RelPath("f")})
    base.forget([RelPath("f")])
    assert base.tick() == []
    now = signatures(written, {RelPath("f")})
    assert base.listing(now) == ["f"]


def test_minimal_keeps_only_topmost_paths() -> None:
    paths = [RelPath(p) for p in ("a/b", "a", "c/d/e", "c/d", "x")]
    assert minimal(paths) == ["a", "c/d", "x"]
    assert minimal([RelPath(""), RelPath("a")]) == [""]


def recs(text: bytes) -> list[Record]:
    return parse_records(text, links=False, final=True)[0]


def no_prune(path: RelPath, is_dir: bool) -> bool:
    return path == "skip" or path.endswith("/skip")


def test_a_partial_listing_hints_changes_and_missing_children_only() -> None:
    base = Baseline()
    full = recs(
        b"41ed 0 1 ./a//\n81a4 1 1 ./a/f//\n81a4 1 1 ./a/g//\n41ed 0 1 ./a/d//\n"
        b"81a4 1 1 ./a/d/h//\n81a4 1 1 ./top//\n41ed 0 1 ./b//\n81a4 1 1 ./b/x//\n"
    )
    assert base.listing(signatures(full, to_snapshot(full, no_prune, print)), full) == []
    # the root (a full listing leaves it out) recently changed: known from then on
    assert base.changes([], recs(b"41ed 0 7 .//\n"), [], no_prune) == []
    assert base.changes([], recs(b"41ed 0 7 .//\n"), [], no_prune) == []
    # a/g deleted and a/d renamed to a/e: only "a" changed (and what moved); b untouched
    covered = recs(b"41ed 0 9 ./a//\n")
    kids = recs(b"81a4 1 1 ./a/f//\n41ed 0 1 ./a/e//\n")
    assert base.changes(covered, [], kids, no_prune) == ["a/d", "a/e", "a/g"]
    assert base.tick() == []
    # a file whose mtime went into the past (its ctime moved): listed alone, no parent
    assert base.changes([], recs(b"81a4 1 0 ./b/x//\n"), [], no_prune) == ["b/x"]
    # the same partial again changes nothing; excluded paths and what lies below an
    # excluded folder never count, even without the folder's own record
    assert base.changes([], recs(b"81a4 1 0 ./b/x//\n"), [], no_prune) == []
    junk = recs(b"41ed 0 5 ./skip//\n81a4 3 5 ./skip/j//\n81a4 3 5 ./b/skip/k//\n")
    assert base.changes([], junk, [], no_prune) == []
    # a folder changed with its mtime kept or set back is not listed with its children:
    # when it was not in the previous partial listing
    # (it entered the window since) is hinted whole; again as listed, nothing; with another
    # mtime or mode, hinted whole again
    assert base.changes([], recs(b"41ed 0 1 ./b//\n"), [], no_prune) == ["b"]
    assert base.changes([], recs(b"41ed 0 1 ./b//\n"), [], no_prune) == []
    assert base.changes([], recs(b"41ed 0 0 ./b//\n"), [], no_prune) == ["b"]
    assert base.changes([], recs(b"41c0 0 0 ./b//\n"), [], no_prune) == ["b"]
    assert base.changes([], recs(b"41ed 0 8 .//\n"), [], no_prune) == [""]


def test_a_tick_after_our_own_write_compares_the_last_partial_again() -> None:
    base = Baseline()
    base.listing({})
    assert base.changes(recs(b"41ed 0 1 .//\n"), [], [], no_prune) == []
    base.note(recs(b"81a4 1 5 ./f//\n"), {RelPath("f")})  # our upload, then a user's rm
    assert base.tick() == ["f"]
    assert base.tick() == []


def test_the_poll_parser_reads_full_and_partial_listings_in_any_chunks() -> None:
    got: list[tuple[str, list[bytes], list[bytes]]] = []
    poller = Poller(
        None,  # type: ignore[arg-type]  # never started: only its parser is fed
        "/app",
        [],
        0.5,
        lambda full: got.append(("full", [r.name for r in full], [])),
        lambda d, c, k: got.append(("part", [r.name for r in d + c], [r.name for r in k])),
        lambda: got.append(("tick", [], [])),
        lambda exc: None,
    )
    stream = (
        b"=UP\n=BEGIN\n41ed 0 1 ./a//\n81a4 1 1 ./a/\n=K\n//\n=END\n=T\n"
        b"=PART\n=D\n41ed 0 1 ./a//\n=K\n81a4 1 1 ./a/f//\n=C\n81a4 1 1 ./b//\n=END\n"
        b"=PART\n=END\n=T\n"
    )
    for size in (1, 7, len(stream)):
        got.clear()
        parser = _Parser(poller)
        for i in range(0, len(stream), size):
            parser.feed(stream[i : i + size])
        assert got == [
            ("full", [b"./a", b"./a/\n=K\n"], []),
            ("tick", [], []),
            ("part", [b"./a", b"./b"], [b"./a/f"]),
            ("part", [], []),
            ("tick", [], []),
        ]
    with pytest.raises(AgentError):
        _Parser(poller).feed(b"=UP\n=WHAT\n")


def test_a_failed_poll_walk_is_dropped_whatever_it_sent_before() -> None:
    """``=CUT`` (find killed or out of resources): a full listing stopped inside a record or
    between two, and a failed walk outside any listing, give no listing, no tick and no
    error; the next listing is read as usual."""
    got: list[tuple[str, list[bytes]]] = []
    poller = Poller(
        None,  # type: ignore[arg-type]  # never started: only its parser is fed
        "/app",
        [],
        0.5,
        lambda full: got.append(("full", [r.name for r in full])),
        lambda d, c, k: got.append(("part", [r.name for r in d + c + k])),
        lambda: got.append(("tick", [])),
        lambda exc: None,
    )
    stream = (
        b"=UP\n=BEGIN\n41ed 0 1 ./a//\n81a4 1 1 ./a/f//\n81a4 0 17\n=CUT\n"
        b"=BEGIN\n41ed 0 1 ./a//\n\n=CUT\n=CUT\n"
        b"=BEGIN\n41ed 0 1 ./a//\n=END\n=T\n"
    )
    for size in (1, 5, len(stream)):
        got.clear()
        poller.cuts = 0
        parser = _Parser(poller)
        for i in range(0, len(stream), size):
            parser.feed(stream[i : i + size])
        assert got == [("full", [b"./a"]), ("tick", [])]
        assert poller.cuts == 3


def test_listing_records_carry_the_fraction_of_stat_y() -> None:
    raw = (
        b"81a4 3 1700000000 2023-11-14 22:13:20.123456789 +0000 ./a b//\n"
        b"81a4 3 1700000000 2023-11-14 22:13:20.5 +0000 ./six//\n"  # fewer digits: scaled
        b"81a4 3 1700000000 2023-11-14 22:13:20 +0000 ./none//\n"
        b"81a4 3 -2 1969-12-31 23:59:58.250000000 +0000 ./old//\n"  # %Y floors
        b"41ed 0 7 .//\n"  # without %y: whole seconds
    )
    records, _, _ = parse_records(raw, links=True, final=True)
    assert [(r.name, r.mtime_ns) for r in records] == [
        (b"./a b", 1_700_000_000_123_456_789),
        (b"./six", 1_700_000_000_500_000_000),
        (b"./none", 1_700_000_000_000_000_000),
        (b"./old", -1_750_000_000),
        (b".", 7_000_000_000),
    ]
    for cut in range(1, len(raw) - 1):  # a record cut anywhere waits for the rest
        got, pos, _ = parse_records(raw[:cut], links=True, final=False)
        assert raw[:pos] == b"".join(raw.splitlines(keepends=True)[: len(got)])

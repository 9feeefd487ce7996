"""The shell agent's pure parts: pattern translation, listing parser, baseline diffs."""

from __future__ import annotations

import pytest

from podsync.core.entry import DIR, Entry
from podsync.core.paths import RelPath
from podsync.engine.shell.baseline import Baseline, minimal, signatures
from podsync.engine.shell.listing import parse_records, to_snapshot
from podsync.engine.shell.scripts import prune_tests
from podsync.errors import ProtocolError, UnsafePath


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

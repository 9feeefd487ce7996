"""The columnar listing codec: round trips, and everything hostile or malformed is refused."""

from __future__ import annotations

import json
import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podsync.core.entry import Entry
from podsync.core.paths import RelPath, relpath
from podsync.errors import ProtocolError, UnsafePath
from podsync.limits import (
    LISTING_CHUNK_BYTES,
    LISTING_CHUNK_ENTRIES,
    LISTING_RAW_MAX_BYTES,
    MAX_BODY_BYTES,
)
from podsync.wire import messages as m


def body(paths: object, kinds: object = None, targets: object = ()) -> bytes:
    n = len(paths) if isinstance(paths, list) else 0
    cols = [paths, kinds if kinds is not None else "f" * n, [1] * n, [5] * n, "0" * n]
    return json.dumps([*cols, list(targets)]).encode()  # type: ignore[arg-type]


def test_empty_listing_round_trips() -> None:
    encoded, compressed = m.encode_listing({})
    assert m.decode_listing(encoded, compressed) == {}


def test_every_kind_round_trips_uncompressed() -> None:
    snap = {
        relpath("d"): Entry("dir"),
        relpath("d/x y.txt"): Entry("file", 3, -7, True),
        relpath("d/ünï"): Entry("file", 0, 1, False),
        relpath("d/l"): Entry("link", target="x y.txt"),
        relpath("d/l2"): Entry("link", target="../d"),
    }
    encoded, compressed = m.encode_listing(snap)
    assert not compressed
    decoded = m.decode_listing(encoded, compressed)
    assert decoded == snap and list(decoded) == list(snap)


@pytest.mark.parametrize(
    "path",
    ["../etc/passwd", "a/../../b", "/abs", "a\\b", "", "a//b", "a/", "./a", "a/.", "a\x00b"],
)
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises((UnsafePath, ProtocolError)):
        m.decode_listing(body(["ok/a", path, "ok/b"]), False)


@pytest.mark.parametrize(
    "raw",
    [
        body(["a"], kinds="x"),
        body(["a"], kinds="ff"),
        body(["a"], kinds="l"),  # a link without a target
        body(["a"], kinds="f", targets=["t"]),  # a target without a link
        body(["a"], kinds="l", targets=[5]),
        body([5]),
        json.dumps([["a"], "f", [-1], [1], "0", []]).encode(),
        json.dumps([["a"], "f", [1.5], [1], "0", []]).encode(),
        json.dumps([["a"], "f", [True], [1], "0", []]).encode(),
        json.dumps([["a"], "f", [1], ["1"], "0", []]).encode(),
        json.dumps([["a"], "f", [1], [1], "2", []]).encode(),
        json.dumps([["a"], "f", [1], [1], "0"]).encode(),
        json.dumps({"a": 1}).encode(),
        b"not json",
    ],
)
def test_malformed_listings_are_refused(raw: bytes) -> None:
    with pytest.raises((UnsafePath, ProtocolError)):
        m.decode_listing(raw, False)


@given(st.lists(st.text(alphabet="ab./\\\x00", max_size=6), min_size=1, max_size=4))
def test_bulk_path_check_agrees_with_relpath(paths: list[str]) -> None:
    """The joined-text check refuses a listing exactly when one of its paths is unsafe."""

    def safe(p: str) -> bool:
        try:
            return relpath(p) != ""
        except UnsafePath:
            return False

    if all(safe(p) for p in paths):
        assert set(m.decode_listing(body(paths), False)) == set(paths)
    else:
        with pytest.raises((UnsafePath, ProtocolError)):
            m.decode_listing(body(paths), False)


# -- bounded pieces, capped inflation, ranges (issue 8: defects 6, 8, 10, 11) ------------------
def big_tree(n: int, name: str = "node_modules/pkg{}/index.js") -> dict[RelPath, Entry]:
    return {
        relpath(name.format(i)): Entry("file", i, 1_700_000_000_000_000_000 + i) for i in range(n)
    }


def test_a_large_tree_travels_in_bounded_pieces_and_round_trips() -> None:
    tree = big_tree(50_000)
    pieces = list(m.listing_pieces(tree))
    assert len(pieces) >= 50_000 // LISTING_CHUNK_ENTRIES
    merged: dict[RelPath, Entry] = {}
    for piece in pieces:
        assert len(piece) <= LISTING_CHUNK_ENTRIES
        body, compressed = m.encode_listing(piece)
        assert len(body) <= MAX_BODY_BYTES
        merged.update(m.decode_listing(body, compressed))
    assert merged == tree


def test_long_paths_cut_pieces_by_bytes_not_only_by_count() -> None:
    tree = big_tree(3000, "d/" + "x" * 900 + "{}")
    for piece in m.listing_pieces(tree):
        body, compressed = m.encode_listing(piece)
        raw = m.inflate(body, LISTING_RAW_MAX_BYTES, "t") if compressed else body
        assert len(raw) <= LISTING_CHUNK_BYTES + 1024


def test_an_empty_tree_is_one_empty_piece() -> None:
    assert list(m.listing_pieces({})) == [{}]


def test_a_listing_that_inflates_beyond_its_cap_is_refused_without_inflating_it() -> None:
    bomb = zlib.compress(b" " * (LISTING_RAW_MAX_BYTES * 50), 9)
    assert len(bomb) < 100_000
    with pytest.raises(ProtocolError, match="inflates to more than"):
        m.decode_listing(bomb, True)


def test_a_listing_flagged_zlib_that_is_not_zlib_is_one_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not valid zlib data"):
        m.decode_listing(b"definitely not zlib", True)


@pytest.mark.parametrize(
    "data", [zlib.compress(b"[]")[:-3], zlib.compress(b"[]") + b"trailing"], ids=["cut", "padded"]
)
def test_truncated_or_padded_zlib_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="truncated or padded"):
        m.inflate(data, 100, "a chunk")


def test_inflate_is_capped_exactly() -> None:
    data = zlib.compress(b"a" * 1000)
    assert m.inflate(data, 1000, "x") == b"a" * 1000
    with pytest.raises(ProtocolError, match="more than 999 bytes"):
        m.inflate(data, 999, "x")
    with pytest.raises(ProtocolError, match="more than 0 bytes"):
        m.inflate(data, 0, "x")


@pytest.mark.parametrize(
    ("column", "value"),
    [("mtime", 10**30), ("mtime", -(2**63) - 1), ("mtime", 2**63), ("size", 2**63)],
)
def test_values_out_of_range_are_refused(column: str, value: int) -> None:
    sizes, mtimes = [1], [1]
    (sizes if column == "size" else mtimes)[0] = value
    raw = json.dumps([["a"], "f", sizes, mtimes, "0", []]).encode()
    with pytest.raises(ProtocolError, match="out of range"):
        m.decode_listing(raw, False)


def test_extreme_but_valid_mtimes_pass() -> None:
    raw = json.dumps([["a", "b"], "ff", [0, 1], [-(2**63), 2**63 - 1], "00", []]).encode()
    assert m.decode_listing(raw, False)[relpath("b")].mtime_ns == 2**63 - 1


@pytest.mark.parametrize("target", ["", "a\x00b", "x" * 5000, "\ud800", "\udcc3\udca9"])
def test_impossible_link_targets_are_refused(target: str) -> None:
    raw = json.dumps([["l"], "l", [0], [0], "0", [target]]).encode()
    with pytest.raises(ProtocolError):
        m.decode_listing(raw, False)
    with pytest.raises(ProtocolError):
        Entry.from_wire(["l", 0, 0, 0, target])


def test_names_that_are_not_utf8_round_trip_byte_exact() -> None:
    name = relpath(os.fsdecode(b"dir/\xff\xfe-caf\xe9"))
    tree = {name: Entry("file", 3, 5), relpath("l"): Entry("link", target=os.fsdecode(b"\xff"))}
    body, compressed = m.encode_listing(tree)
    decoded = m.decode_listing(body, compressed)
    assert [os.fsencode(p) for p in decoded] == [b"dir/\xff\xfe-caf\xe9", b"l"]
    assert os.fsencode(decoded[relpath("l")].target or "") == b"\xff"


@pytest.mark.parametrize("path", ["\ud800", "a/\udcc3\udca9", "\udc41"])
def test_surrogates_no_file_system_name_gives_are_refused(path: str) -> None:
    with pytest.raises(ProtocolError):
        m.decode_listing(body(["ok", path]), False)
    with pytest.raises(ProtocolError):
        m.path_from_wire(path)


def test_batches_are_bounded_by_count_and_bytes() -> None:
    paths = [f"p{i}" for i in range(2500)]
    cut = list(m.batches(paths, m.path_weight))
    assert [len(b) for b in cut] == [1000, 1000, 500]
    heavy = ["x" * 100_000] * 5
    assert [len(b) for b in m.batches(heavy, m.path_weight, max_bytes=250_000)] == [2, 2, 1]
    assert list(m.batches([], m.path_weight)) == []


def test_lists_longer_than_a_batch_are_refused() -> None:
    with pytest.raises(ProtocolError, match="at most"):
        m.paths_from_wire(["a"] * 1001)
    with pytest.raises(ProtocolError):
        m.written_from_wire([["a", None]] * 1001)

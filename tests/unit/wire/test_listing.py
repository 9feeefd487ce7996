"""The columnar listing codec: round trips, and everything hostile or malformed is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podsync.core.entry import Entry
from podsync.core.paths import relpath
from podsync.errors import ProtocolError, UnsafePath
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

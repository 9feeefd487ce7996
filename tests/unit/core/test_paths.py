"""core.paths: which strings are safe RelPaths, canonical names and how paths are shown.

Linux names are bytes; a RelPath is the ``os.fsdecode`` (UTF-8, surrogateescape) view of
them. Every byte string that is a valid single name must round-trip through
``os.fsdecode -> relpath -> os.fsencode``; no other spelling of the same bytes may pass.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podsync.core.paths import (
    RelPath,
    canonical,
    join,
    keep_unknown,
    printable,
    relpath,
    symlink_stays_inside,
)
from podsync.errors import UnsafePath


class Row(NamedTuple):
    what: str
    value: object
    ok: bool


RELPATH_ROWS = [
    Row("the root", "", True),
    Row("a plain name", "a", True),
    Row("nested", "a/b/c.txt", True),
    Row("UTF-8 name", "dir/café/漢字", True),
    Row("undecodable byte 0xff", "bad\udcff", True),
    Row("undecodable bytes 0x80 and 0xfe", "\udc80x\udcfe", True),
    Row("truncated UTF-8 sequence (0xc3 alone)", "x\udcc3", True),
    Row("overlong encoding of '/' (0xc0 0xaf) stays two undecodable bytes", "\udcc0\udcaf", True),
    Row("encoded surrogate (0xed 0xb3 0xbf) stays three bytes", "\udced\udcb3\udcbf", True),
    Row("name with a newline", "new\nline", True),
    Row("name with a tab and escape char", "a\tb\x1b", True),
    Row("a second spelling of 'é' (its bytes escaped)", "caf\udcc3\udca9", False),
    Row("escaped ASCII byte (U+DC41 is no undecodable byte)", "a\udc41", False),
    Row("escaped '/' smuggling a separator", "a\udc2fb", False),
    Row("high surrogate", "x\ud800", False),
    Row("low surrogate outside the escape range", "x\udfff", False),
    Row("a surrogate pair written out", "\ud83d\ude00", False),
    Row("absolute", "/etc/passwd", False),
    Row("dot-dot", "a/../b", False),
    Row("leading dot-dot", "../x", False),
    Row("dot component", "./a", False),
    Row("empty component", "a//b", False),
    Row("trailing slash", "a/", False),
    Row("NUL", "a\x00b", False),
    Row("backslash", "a\\b", False),
    Row("not a string", b"a", False),
    Row("None", None, False),
]


@pytest.mark.parametrize("row", RELPATH_ROWS, ids=[r.what for r in RELPATH_ROWS])
def test_relpath_table(row: Row) -> None:
    if row.ok:
        assert relpath(row.value) == row.value
    else:
        with pytest.raises(UnsafePath):
            relpath(row.value)


@pytest.mark.parametrize("row", RELPATH_ROWS, ids=[r.what for r in RELPATH_ROWS])
def test_join_agrees_with_relpath_for_single_names(row: Row) -> None:
    value = row.value
    if not isinstance(value, str) or "/" in value or value == "":
        return
    if row.ok:
        assert join(relpath("top"), value) == f"top/{value}"
    else:
        with pytest.raises(UnsafePath):
            join(relpath("top"), value)


# One component as the kernel allows it: 1-255 bytes, no NUL, no '/'.
name_bytes = st.binary(min_size=1, max_size=255).filter(
    lambda b: b"\x00" not in b and b"/" not in b and b not in (b".", b"..")
)


@given(name_bytes)
def test_every_valid_name_round_trips_byte_exact(raw: bytes) -> None:
    name = os.fsdecode(raw)
    if "\\" in name:
        with pytest.raises(UnsafePath):
            relpath(name)
        return
    assert canonical(name)
    assert os.fsencode(relpath(name)) == raw
    assert os.fsencode(relpath(f"d/{name}/x")) == b"d/" + raw + b"/x"


# Text with plenty of surrogates (hypothesis leaves them out of st.characters by default).
mixed_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_characters="\x00/\\"),
        st.integers(0xDC80, 0xDCFF).map(chr),
        st.integers(0xD800, 0xDFFF).map(chr),
        st.sampled_from("\udcc3\udca9\u00e9a"),
    ),
    min_size=1,
)


@given(mixed_text)
def test_no_second_spelling_of_the_same_bytes_is_accepted(text: str) -> None:
    """Whatever text relpath accepts is exactly the fsdecode of its own bytes, so two
    different accepted strings are always two different files."""
    if text in (".", ".."):
        return
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        with pytest.raises(UnsafePath):
            relpath(text)
        return
    if os.fsdecode(raw) == text:
        assert relpath(text) == text
    else:
        with pytest.raises(UnsafePath):
            relpath(text)


@given(st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=8))
def test_escaped_bytes_canonical_iff_they_are_not_utf8(codes: list[int]) -> None:
    text = "".join(chr(0xDC00 + c) for c in codes)
    raw = bytes(codes)
    assert canonical(text) == (os.fsdecode(raw) == text)


def test_symlink_targets_must_be_canonical_too() -> None:
    assert symlink_stays_inside(relpath("a/l"), "t\udcff")
    assert not symlink_stays_inside(relpath("a/l"), "caf\udcc3\udca9")
    assert not symlink_stays_inside(relpath("a/l"), "x\ud800")


PRINTABLE_ROWS = [
    ("plain", "a/b.txt", "a/b.txt"),
    ("UTF-8 kept", "café/漢字", "café/漢字"),
    ("undecodable byte as \\xNN", "bad\udcff.txt", "bad\\xff.txt"),
    ("newline escaped: stays one line", "new\nline", "new\\nline"),
    ("terminal escape neutralised", "x\x1b[31mred", "x\\x1b[31mred"),
    ("non-canonical surrogate does not raise", "x\ud800", "x\\ud800"),
    ("zero-width space shown", "a\u200bb", "a\\u200bb"),
]


@pytest.mark.parametrize(("what", "text", "shown"), PRINTABLE_ROWS)
def test_printable(what: str, text: str, shown: str) -> None:
    out = printable(text)
    assert out == shown, what
    out.encode("utf-8")  # never raises: safe for any UTF-8 sink
    assert "\n" not in out


@given(st.text())
def test_printable_never_raises_and_is_one_line(text: str) -> None:
    out = printable(text)
    out.encode("utf-8")
    assert "\n" not in out and "\r" not in out


def test_keep_unknown_puts_back_what_was_known_at_and_below_unknown_paths() -> None:
    known = {
        RelPath("d"): "dir",
        RelPath("d/a"): "old a",
        RelPath("d/sub/b"): "old b",
        RelPath("dx"): "sibling, not below d",
        RelPath("f"): "old f",
        RelPath("gone"): "deleted for real",
    }
    fresh = {RelPath("d"): "dir (fresh)", RelPath("dx"): "dx (fresh)", RelPath("new"): "new"}
    out = keep_unknown(fresh, known, [RelPath("d"), RelPath("f")])
    assert out is fresh
    assert out == {
        "d": "dir (fresh)",  # what the scan saw wins
        "d/a": "old a",
        "d/sub/b": "old b",
        "dx": "dx (fresh)",
        "f": "old f",
        "new": "new",
    }  # "gone" was readable and is absent: a real deletion stays one


def test_keep_unknown_of_the_root_keeps_everything_and_nothing_unknown_is_free() -> None:
    known = {RelPath("a"): 1, RelPath("b/c"): 2}
    assert keep_unknown({}, known, [RelPath("")]) == known
    fresh: dict[RelPath, int] = {}
    assert keep_unknown(fresh, known, []) == {}

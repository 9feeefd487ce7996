"""The sans-I/O framing: whole and byte-at-a-time feeding, banners, broken peers."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podsync.core.entry import ANY, Entry
from podsync.errors import ProtocolError, UnsafePath
from podsync.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES
from podsync.wire import messages as m
from podsync.wire.frames import (
    MAGIC,
    MAX_PREAMBLE_BYTES,
    Decoder,
    encode,
    handshake_bytes,
    printable,
)

FRAMES = [
    ({"t": "hello", "id": 1, "rules": {"exclude": ["node_modules/"]}}, b""),
    ({"t": "chunk", "id": 2, "end": True}, bytes(range(256)) * 10),
    ({"t": "result", "id": 3, "name": "é ü 漢字"}, b"\x00\x01"),
]


def stream() -> bytes:
    return handshake_bytes() + b"".join(encode(h, b) for h, b in FRAMES)


def test_whole_stream_decodes_every_frame() -> None:
    frames = Decoder("the agent").feed(stream())
    assert [(f.header, f.body) for f in frames] == FRAMES


def test_one_byte_at_a_time_gives_the_same_frames() -> None:
    decoder = Decoder("the agent")
    frames = []
    for byte in stream():
        frames.extend(decoder.feed(bytes([byte])))
    assert [(f.header, f.body) for f in frames] == FRAMES
    assert decoder.buffered == 0


def test_text_before_the_magic_is_kept_as_preamble() -> None:
    decoder = Decoder("the agent")
    frames = decoder.feed(b"Welcome to the container!\n" + stream())
    assert len(frames) == len(FRAMES)
    assert decoder.preamble == b"Welcome to the container!\n"


def test_command_not_found_is_reported_in_words() -> None:
    decoder = Decoder("the agent")
    with pytest.raises(ProtocolError, match=r"did not start the podsync protocol.*not found"):
        decoder.feed(b"sh: python3: not found\n" * 300)


def test_other_protocol_version_is_refused_by_name() -> None:
    with pytest.raises(ProtocolError, match="the agent speaks protocol version 9"):
        Decoder("the agent").feed(MAGIC + b"\x00\x09")


def test_version_one_agents_are_refused() -> None:
    """Version 1 had unbounded listings and no acknowledgements: a new agent installs."""
    with pytest.raises(ProtocolError, match="version 1, this podsync speaks 2"):
        Decoder("the agent").feed(handshake_bytes(1))


def test_names_that_are_not_utf8_cross_byte_exact() -> None:
    """Linux names are bytes: os.fsdecode gives lone surrogates for undecodable ones; a frame
    carries them unchanged, so os.fsencode on the other side gives the same bytes."""
    name = os.fsdecode(b"caf\xe9-\xff\xfe.txt")
    frames = Decoder("x").feed(handshake_bytes() + encode({"t": "item", "path": f"d/{name}"}))
    assert os.fsencode(frames[0].header["path"]) == b"d/caf\xe9-\xff\xfe.txt"


def test_headers_are_ascii_whatever_the_names() -> None:
    raw = encode({"t": "x", "p": os.fsdecode(b"\xff") + "é漢"})
    assert raw[8:].isascii()


@pytest.mark.parametrize(
    "text",
    ["plain", "é ü 漢字", os.fsdecode(b"bad \xff name"), "\ud800 lone", "multi\nline\ttext"],
)
def test_printable_never_raises_and_is_one_line(text: str) -> None:
    shown = printable(text)
    shown.encode("utf-8")  # always encodable
    assert "\n" not in shown
    assert printable("x" * 1000, 50) == "x" * 47 + "..."


def test_oversized_header_is_refused_before_it_is_buffered() -> None:
    decoder = Decoder("the agent")
    lengths = struct.pack(">II", MAX_HEADER_BYTES + 1, 0)
    with pytest.raises(ProtocolError, match="oversized frame"):
        decoder.feed(handshake_bytes() + lengths)
    assert decoder.buffered == 0


def test_oversized_body_is_refused() -> None:
    lengths = struct.pack(">II", 10, MAX_BODY_BYTES + 1)
    with pytest.raises(ProtocolError, match="oversized frame"):
        Decoder("the agent").feed(handshake_bytes() + lengths)


def test_a_broken_stream_stays_broken() -> None:
    decoder = Decoder("the agent")
    with pytest.raises(ProtocolError):
        decoder.feed(handshake_bytes() + b"\x00\x00\x00\x02\x00\x00\x00\x00[]")
    with pytest.raises(ProtocolError):
        decoder.feed(encode({"t": "ok"}))


def test_a_long_banner_without_the_magic_is_refused() -> None:
    decoder = Decoder("the agent")
    decoder.feed(b"x" * MAX_PREAMBLE_BYTES)
    with pytest.raises(ProtocolError, match="did not start the podsync protocol"):
        decoder.feed(b"x" * 100 + handshake_bytes())


def test_deeply_nested_json_is_a_protocol_error() -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    frame = struct.pack(">II", len(raw), 0) + raw
    with pytest.raises(ProtocolError, match="not JSON"):
        Decoder("the agent").feed(handshake_bytes() + frame)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00\x00\x02\x00\x00\x00\x00[]", "without a message type"),
        (b"\x00\x00\x00\x03\x00\x00\x00\x00{x}", "not JSON"),
        (b"\x7f\x00\x00\x00\x00\x00\x00\x00", "oversized frame"),
    ],
)
def test_malformed_frames_name_the_peer(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=f"podsync.*{message}|{message}"):
        Decoder("podsync").feed(handshake_bytes() + raw)


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 50))
def test_any_bodies_any_split(bodies: list[bytes], step: int) -> None:
    data = handshake_bytes() + b"".join(
        encode({"t": "chunk", "n": i}, b) for i, b in enumerate(bodies)
    )
    decoder = Decoder("x")
    frames = []
    for at in range(0, len(data), step):
        frames.extend(decoder.feed(data[at : at + step]))
    assert [f.body for f in frames] == bodies
    assert [f.header["n"] for f in frames] == list(range(len(bodies)))


def test_listing_round_trip_and_compression() -> None:
    snapshot = {
        m.relpath(f"dir/file{i}.txt"): Entry("file", i, 1_700_000_000_000_000_000 + i, i % 2 == 0)
        for i in range(3000)
    }
    snapshot[m.relpath("dir")] = Entry("dir")
    snapshot[m.relpath("dir/link")] = Entry("link", target="file1.txt")
    body, compressed = m.encode_listing(snapshot)
    assert compressed
    assert m.decode_listing(body, compressed) == snapshot


@pytest.mark.parametrize(
    "hostile",
    [
        '[["../etc/passwd", ["f", 1, 1, 0, null]]]',
        '[["/abs", ["d", 0, 0, 0, null]]]',
        '[["a\\\\b", ["f", 1, 1, 0, null]]]',
        '[["", ["d", 0, 0, 0, null]]]',
    ],
)
def test_hostile_listing_paths_are_rejected(hostile: str) -> None:
    with pytest.raises((UnsafePath, ProtocolError)):
        m.decode_listing(hostile.encode(), False)


@pytest.mark.parametrize(
    "bad",
    [["x", 1, 1, 0, None], ["f", -1, 1, 0, None], ["l", 0, 0, 0, None], ["f", 1, 1, 0, 5], "f"],
)
def test_malformed_entries_are_rejected(bad: object) -> None:
    with pytest.raises(ProtocolError):
        Entry.from_wire(bad)


def test_expectations_round_trip() -> None:
    entry = Entry("file", 3, 5, True)
    for expect in (ANY, None, entry):
        assert m.expect_from_wire(m.expect_to_wire(expect)) == expect


def test_what_the_peer_printed_reaches_the_terminal_escaped() -> None:
    """A hostile container cannot send terminal escape sequences through an error message."""
    decoder = Decoder("the agent")
    decoder.feed(b"\x1b]0;owned\x07\x1b[2J\xff oops\n")
    assert decoder.printed == "\\x1b]0;owned\\x07\\x1b[2J\\xff oops"
    with pytest.raises(ProtocolError) as caught:
        decoder.feed(b"\x1b[31m" * 2000)
    assert str(caught.value).isprintable()
    assert "\x1b" not in str(caught.value)

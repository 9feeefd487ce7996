"""Sans-I/O framing shared by the engine and the agent.

Owns: the handshake and the frame format. May import: the standard library, ``podsync.errors``
and ``podsync.limits``. Does no I/O: callers feed received bytes in and write returned bytes
out (the h11 pattern), so both ends and the tests share one implementation.

Byte stream, each direction::

    handshake:  MAGIC (8 bytes) + version (2 bytes, big endian)
    frame:      header length (4 bytes BE) + body length (4 bytes BE) + header + body

The header is a JSON object with at least ``"t"`` (the message type), written as pure ASCII
(every non-ASCII character as a ``\\u`` escape); the body is raw bytes (file content, or a
compact listing). File names are bytes on Linux: a name that is not valid UTF-8 travels as the
lone surrogates ``os.fsdecode`` gives for its undecodable bytes (U+DC80..U+DCFF), which JSON
escapes carry unchanged, so names cross byte-exact. Receivers decode with ``surrogateescape``
and validate every value where it is used (``core.paths.relpath``, ``Entry.from_wire``).

The magic comes first so that a shell banner or "python3: not found" on the agent's stdout is
recognised as such instead of being parsed. Nothing relies on end-of-stream: the exec
protocols of older Kubernetes cannot signal it. Memory: the decoder holds at most one frame
(bounded by MAX_HEADER_BYTES + MAX_BODY_BYTES) plus the bytes of one ``feed``.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, List, Optional, Tuple

from podsync.core import paths
from podsync.errors import ProtocolError
from podsync.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES

MAGIC = b"\x89PSYNC\r\n"
#: Version 2: bounded listings and batches, acknowledgements and progress (liveness), cancel.
VERSION = 2
#: Text before the magic longer than this is not a banner: the peer is not speaking podsync.
MAX_PREAMBLE_BYTES = 4096
_HANDSHAKE = struct.Struct(">H")
_LENGTHS = struct.Struct(">II")

Header = Dict[str, Any]


def handshake_bytes(version: int = VERSION) -> bytes:
    return MAGIC + _HANDSHAKE.pack(version)


def encode(header: Header, body: bytes = b"") -> bytes:
    """One frame as bytes."""
    raw = json.dumps(header, separators=(",", ":")).encode("ascii")
    return _LENGTHS.pack(len(raw), len(body)) + raw + body


class Frame:
    """A decoded frame: ``header`` (validated to be a JSON object with a string ``t``) and
    ``body``."""

    __slots__ = ("body", "header")

    def __init__(self, header: Header, body: bytes) -> None:
        self.header = header
        self.body = body

    @property
    def type(self) -> str:
        return str(self.header["t"])

    def __repr__(self) -> str:
        return f"Frame({self.header!r}, {len(self.body)} bytes)"


class Decoder:
    """Incremental decoder: ``feed(data)`` returns the frames completed by ``data``.

    ``peer`` names the other end in error messages ("the agent", "podsync"), so a broken
    stream says who broke it.
    """

    def __init__(self, peer: str, expect_handshake: bool = True) -> None:
        self._peer = peer
        self._buf = bytearray()
        self._need_handshake = expect_handshake
        self.peer_version: Optional[int] = None
        #: Text that arrived before the magic (a shell banner, an error message).
        self.preamble = b""
        self._broken: Optional[ProtocolError] = None

    def feed(self, data: bytes) -> List[Frame]:
        """The frames completed by ``data``; ProtocolError (now and on every later call) when
        the stream is broken."""
        if self._broken is not None:
            raise self._broken
        self._buf += data
        frames: List[Frame] = []
        try:
            if self._need_handshake and not self._take_handshake():
                return frames
            while True:
                frame = self._take_frame()
                if frame is None:
                    return frames
                frames.append(frame)
        except ProtocolError as exc:
            self._broken = exc
            del self._buf[:]
            raise

    def _take_handshake(self) -> bool:
        at = self._buf.find(MAGIC)
        if at < 0 or at > MAX_PREAMBLE_BYTES:
            # Keep a tail that could be the start of the magic; the rest is preamble.
            if len(self._buf) > MAX_PREAMBLE_BYTES + len(MAGIC):
                raise ProtocolError(
                    f"{self._peer} did not start the podsync protocol; it printed: "
                    f"{_printable(bytes(self._buf[:200]))}"
                )
            return False
        if len(self._buf) < at + len(MAGIC) + _HANDSHAKE.size:
            return False
        self.preamble = bytes(self._buf[:at])
        (version,) = _HANDSHAKE.unpack_from(self._buf, at + len(MAGIC))
        del self._buf[: at + len(MAGIC) + _HANDSHAKE.size]
        if version != VERSION:
            raise ProtocolError(
                f"{self._peer} speaks protocol version {version}, this podsync speaks {VERSION}"
            )
        self.peer_version = version
        self._need_handshake = False
        return True

    def _take_frame(self) -> Optional[Frame]:
        if len(self._buf) < _LENGTHS.size:
            return None
        hlen, blen = _LENGTHS.unpack_from(self._buf, 0)
        if hlen > MAX_HEADER_BYTES or blen > MAX_BODY_BYTES:
            raise ProtocolError(
                f"{self._peer} sent an oversized frame (header {hlen}, body {blen} bytes)"
            )
        end = _LENGTHS.size + hlen + blen
        if len(self._buf) < end:
            return None
        raw = bytes(self._buf[_LENGTHS.size : _LENGTHS.size + hlen])
        body = bytes(self._buf[_LENGTHS.size + hlen : end])
        del self._buf[:end]
        return Frame(_parse_header(raw, self._peer), body)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def printed(self) -> str:
        """What the peer printed so far instead of the handshake (for a one-line error)."""
        raw = self.preamble if not self._need_handshake else bytes(self._buf[:200])
        return _printable(raw) if raw else ""


def _parse_header(raw: bytes, peer: str) -> Header:
    try:
        header = json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        reason = str(exc)[:100] or type(exc).__name__
        raise ProtocolError(f"{peer} sent a frame header that is not JSON: {reason}") from None
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise ProtocolError(f"{peer} sent a frame header without a message type")
    return header


def _printable(data: bytes) -> str:
    """Bytes the peer printed, safe for a terminal: one line, bytes that are not UTF-8 as
    ``\\xNN`` and control characters escaped (a hostile container must not be able to send
    escape sequences to the user's terminal through an error message)."""
    return printable(data.decode("utf-8", "surrogateescape"), 300) or repr(data)


def printable(text: str, limit: int = 500) -> str:
    """``text`` from the other side made safe to print and log: one line, at most ``limit``
    characters, bytes that are not UTF-8 as ``\\xNN`` and other unprintable characters
    escaped (``core.paths.printable``); never an encoding error."""
    line = paths.printable(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def split_waiting_text(preamble: bytes) -> Tuple[str, ...]:
    """Lines of text seen before the handshake (for logs)."""
    return tuple(line for line in preamble.decode("utf-8", "replace").splitlines() if line)

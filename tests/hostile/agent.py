"""A hostile podsync agent: a test double that speaks wire protocol v2 and misbehaves on purpose.

Why a double: the container is untrusted, but the real agent (``podsync.agent.server``) cannot
be made to send paths escaping the root, chunks beyond what it announced, zip bombs, absurd
entries, garbage or silence; its own checks refuse to. This program stands in for it so that
the engine's defences are tested against a peer that breaks every rule, in a real container,
over the real ``docker exec`` pipe.

Faithful where it matters: the framing (handshake, frame header and body) is the shipped
``podsync.wire.frames`` code, bundled next to this file (see tests/e2e/test_hostile.py), and
the messages have the real shapes (``hello`` answer, ``list`` pieces in the column format of
``wire.messages.encode_listing``, ``item``/``chunk`` for a ``get``, ``ack`` for ``ping``).
Only the values are hostile, and only in the one way the mode asks for.

Usage: ``agent.py serve ROOT`` (the real agent's command line); ``agent.py bomb`` builds the
cached zip bomb ahead of time. The mode comes from
PODSYNC_HOSTILE_MODE, or from the JSON file ``hostile-mode`` next to this program
(``{"mode": ..., "outside": ...}``; the test writes it, since ``docker exec`` passes no
environment from podsync). Standard library only, Python >= 3.9. It never runs longer than
LIFETIME_SECONDS, and it exits when its input ends.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from typing import Any

from podsync.wire.frames import Decoder, Frame, encode, handshake_bytes

LIFETIME_SECONDS = 120
MIB = 1 << 20
#: A zlib stream of this many zero bytes is about 1 MB (a ratio of ~1000).
BOMB_RAW_BYTES = 1 << 30
BOMB_CACHE = "/tmp/.podsync/hostile-bomb.z"
NOW_NS = 1_700_000_000 * 10**9

#: Every mode, with what it does wrong.
MODES: dict[str, str] = {
    "escape-dotdot": "the listing names '../escaped.txt' (outside the root)",
    "escape-absolute": "the listing names an absolute path (outside the root)",
    "escape-item": "a get is answered with an item for '../escaped.txt', which was not asked for",
    "escape-symlink": "a link to a folder outside the root, and a file listed through it",
    "escape-link": "links whose targets leave the root ('../../..', an absolute path)",
    "excluded": "the listing names files in an excluded folder and omits the local ones there",
    "endless-chunks": "an item announced as 5 bytes, then endless 1 MiB chunks",
    "oversize-chunks": "an item announced as 2 MiB, then endless 256 KiB chunks",
    "empty-chunks": "an item announced as 5 bytes, then endless empty chunks without an end",
    "zlib-bomb-chunk": "a 1 MB chunk flagged zlib that inflates to 1 GiB",
    "zlib-bomb-listing": "a 1 MB scan listing flagged zlib that inflates to 1 GiB",
    "bad-zlib-chunk": "a chunk flagged zlib that is not zlib data",
    "mtime-huge": "an entry with an mtime of 10**30 ns",
    "mtime-negative": "an entry with an mtime of -10**30 ns",
    "mtime-extreme": "entries with the extreme int64 mtimes, in range but beyond most clocks",
    "bad-mode": "a listing with an unknown kind and exec flag, and an item with bad ones",
    "silent": "the handshake, then silence (not even ping is answered)",
    "ping-only": "answers hello and ping, never scan or get",
    "no-hello": "answers ping, never hello",
    "garbage": "the handshake, then endless random bytes",
    "garbage-preamble": "endless random bytes instead of the handshake",
    "oversized-header": "the handshake, then a frame header announcing a 2 GiB header",
    "endless-listing": "a scan answered by endless listing pieces of new paths",
    "repeated-listing": "a scan answered by the same listing piece (and empty ones) forever",
    "warn-flood": "after the first scan, 200k distinct warnings, then it exits",
    "hints-flood": "after the first scan, 2000 hints with listings of new paths, then it exits",
    "stderr-flood": "after the first scan, 200k distinct lines on stderr, then it exits",
}
FLOOD_WARNINGS = 200_000
FLOOD_HINTS = 2000

_LENGTHS = struct.Struct(">II")


class Out:
    """stdout as frames; whole frames only (a lock), any failure ends the program."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def raw(self, data: bytes) -> None:
        with self.lock:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(1, view) :]
            except OSError:
                os._exit(0)  # podsync went away: nothing left to misbehave for

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        self.raw(encode(header, body))


def listing_body(rows: list[tuple[str, str, int, int, str, str | None]]) -> bytes:
    """A listing piece in the column format of ``wire.messages.encode_listing``, built by hand
    so that it can carry values the real encoder never produces. Rows: (path, kind letter,
    size, mtime_ns, exec flag, link target or None)."""
    cols = [
        [r[0] for r in rows],
        "".join(r[1] for r in rows),
        [r[2] for r in rows],
        [r[3] for r in rows],
        "".join(r[4] for r in rows),
        [r[5] for r in rows if r[1] == "l"],
    ]
    return json.dumps(cols, separators=(",", ":")).encode("ascii")


def bomb() -> bytes:
    """About 1 MB of zlib that inflates to BOMB_RAW_BYTES (cached: building it takes ~3 s)."""
    try:
        with open(BOMB_CACHE, "rb") as handle:
            return handle.read()
    except OSError:
        pass
    packer = zlib.compressobj(9)
    zeros = bytes(16 * MIB)
    parts = [packer.compress(zeros) for _ in range(BOMB_RAW_BYTES // len(zeros))]
    data = b"".join(parts) + packer.flush()
    temp = f"{BOMB_CACHE}.{os.getpid()}"
    with open(temp, "wb") as handle:
        handle.write(data)
    os.replace(temp, BOMB_CACHE)
    return data


class Hostile:
    def __init__(self, mode: str, root: str, outside: str) -> None:
        self.mode = mode
        self.root = root
        self.outside = outside
        self.out = Out()
        self.rx = 0
        self.requests: queue.Queue[Frame] = queue.Queue()

    # -- input ---------------------------------------------------------------------------------
    def read_loop(self) -> None:
        decoder = Decoder("podsync")
        while True:
            try:
                data = os.read(0, 1 << 18)
            except OSError:
                data = b""
            if not data:
                os._exit(0)  # end of input: podsync closed the pipe
            self.rx += len(data)
            try:
                frames = decoder.feed(data)
            except Exception:
                os._exit(0)
            for frame in frames:
                if frame.type == "bye":
                    os._exit(0)
                if frame.type == "ping":
                    if self.mode != "silent":
                        self.out.send({"t": "ack", "rx": self.rx})
                elif frame.type not in ("cancel", "credit"):
                    self.requests.put(frame)

    # -- modes that never get as far as messages -----------------------------------------------
    def run(self) -> None:
        if self.mode == "garbage-preamble":
            self.endless(lambda: os.urandom(64 * 1024))
        self.out.raw(handshake_bytes())
        if self.mode == "garbage":
            self.endless(lambda: os.urandom(64 * 1024))
        if self.mode == "oversized-header":
            self.out.raw(_LENGTHS.pack(1 << 31, 0))
            self.endless(lambda: b"{" * 65536)
        threading.Thread(target=self.read_loop, daemon=True).start()
        while True:
            frame = self.requests.get()
            if self.mode in ("silent", "no-hello"):
                continue
            handler: Callable[[int, Frame], None] = getattr(self, "on_" + frame.type, self.on_other)
            request_id = frame.header.get("id")
            if isinstance(request_id, int):
                handler(request_id, frame)

    def endless(self, produce: Callable[[], bytes]) -> None:
        while True:
            self.out.raw(produce())

    # -- requests ------------------------------------------------------------------------------
    def on_hello(self, request_id: int, frame: Frame) -> None:
        self.out.send(
            {
                "t": "result",
                "id": request_id,
                "python": ".".join(map(str, sys.version_info[:3])),
                "pid": os.getpid(),
                "root": self.root,
                "watcher": "off",
                "granularity": 1,
                "temps_removed": 0,
                "fsid": "hostile-double",
            }
        )

    def on_scan(self, request_id: int, frame: Frame) -> None:
        mode = self.mode
        if mode == "ping-only":
            return
        if mode == "zlib-bomb-listing":
            self.out.send({"t": "list", "id": request_id, "z": True}, bomb())
        elif mode == "endless-listing":
            for n in range(10**9):
                rows = [
                    (f"d{n:07d}/{'x' * 180}{i:05d}", "f", 1, NOW_NS, "0", None) for i in range(4096)
                ]
                self.out.send({"t": "list", "id": request_id, "z": False}, listing_body(rows))
        elif mode == "repeated-listing":
            piece = listing_body([(f"same{i:05d}", "f", 1, NOW_NS, "0", None) for i in range(4096)])
            empty = listing_body([])
            while True:
                self.out.send({"t": "list", "id": request_id, "z": False}, piece)
                self.out.send({"t": "list", "id": request_id, "z": False}, empty)
        else:
            body = listing_body(self.rows())
            self.out.send({"t": "list", "id": request_id, "z": False}, body)
        self.out.send({"t": "result", "id": request_id, "unreadable": []})
        if mode == "warn-flood":
            for n in range(0, FLOOD_WARNINGS, 100):
                lines = [f"hostile warning {n + i}: {'w' * 200}" for i in range(100)]
                self.out.send({"t": "warn", "lines": lines})
            os._exit(0)
        if mode == "stderr-flood":
            for n in range(0, FLOOD_WARNINGS, 100):
                text = "".join(f"hostile line {n + i}: {'e' * 200}\n" for i in range(100))
                os.write(2, text.encode())
            os._exit(0)
        if mode == "hints-flood":
            for n in range(FLOOD_HINTS):
                rows = [(f"h{n:05d}/{i:04d}", "f", 1, NOW_NS, "0", None) for i in range(1000)]
                header = {"t": "hints", "paths": [f"h{n:05d}"], "listing": True, "z": False}
                self.out.send({**header, "w": 0}, listing_body(rows))
            os._exit(0)

    def rows(self) -> list[tuple[str, str, int, int, str, str | None]]:
        ok = ("ok.txt", "f", 5, NOW_NS, "0", None)
        mode = self.mode
        if mode == "escape-dotdot":
            return [ok, ("../escaped.txt", "f", 5, NOW_NS, "0", None)]
        if mode == "escape-absolute":
            return [ok, (self.outside + "/escaped.txt", "f", 5, NOW_NS, "0", None)]
        if mode == "escape-symlink":
            return [
                ("lnk", "l", 0, NOW_NS, "0", self.outside),
                ("lnk/escaped.txt", "f", 5, NOW_NS, "0", None),
            ]
        if mode == "escape-link":
            return [
                ok,
                ("up", "l", 0, NOW_NS, "0", "../../.."),
                ("abs", "l", 0, NOW_NS, "0", self.outside),
            ]
        if mode == "excluded":
            return [
                ok,
                ("skip", "d", 0, NOW_NS, "0", None),
                ("skip/evil.txt", "f", 5, NOW_NS, "0", None),
            ]
        if mode in ("endless-chunks", "empty-chunks", "bad-zlib-chunk"):
            return [("big.bin", "f", 5, NOW_NS, "0", None)]
        if mode == "oversize-chunks":
            return [("big.bin", "f", 2 * MIB, NOW_NS, "0", None)]
        if mode == "zlib-bomb-chunk":
            return [("big.bin", "f", BOMB_RAW_BYTES, NOW_NS, "0", None)]
        if mode == "mtime-huge":
            return [ok, ("future.txt", "f", 5, 10**30, "0", None)]
        if mode == "mtime-negative":
            return [ok, ("past.txt", "f", 5, -(10**30), "0", None)]
        if mode == "mtime-extreme":
            return [
                ("future.txt", "f", 5, (1 << 63) - 1, "0", None),
                ("past.txt", "f", 5, -(1 << 63), "0", None),
            ]
        if mode == "bad-mode":
            return [ok, ("fifo", "p", 0, NOW_NS, "7", None)]
        if mode in ("warn-flood", "hints-flood", "stderr-flood"):
            return []  # nothing to download: the flood reaches the watch phase
        return [ok]

    def on_get(self, request_id: int, frame: Frame) -> None:
        if self.mode == "ping-only":
            return
        paths = frame.header.get("paths") or []
        rows = {r[0]: r for r in self.rows()}
        for path in paths:
            row = rows.get(path, (path, "f", 5, NOW_NS, "0", None))
            _, kind, size, mtime, exe, target = row
            entry = [kind, size, mtime, int(exe) if exe.isdigit() else exe, target]
            if self.mode == "escape-item":
                path = "../escaped.txt"
            if self.mode == "bad-mode":
                entry = ["f", 5, NOW_NS, 7, None]
            self.out.send({"t": "item", "id": request_id, "path": path, "entry": entry})
            if kind != "f":
                continue
            self.content(request_id, size)
        self.out.send({"t": "result", "id": request_id, "problems": []})

    def content(self, request_id: int, size: int) -> None:
        mode = self.mode
        chunk = {"t": "chunk", "id": request_id}
        if mode == "endless-chunks":
            self.endless(lambda: encode(chunk, bytes(MIB)))
        if mode == "oversize-chunks":
            self.endless(lambda: encode(chunk, bytes(256 * 1024)))
        if mode == "empty-chunks":
            self.endless(lambda: encode(chunk) * 1024)
        if mode == "zlib-bomb-chunk":
            self.out.send({**chunk, "z": True}, bomb())
            self.endless(lambda: encode({**chunk, "z": True}, bomb()))
        if mode == "bad-zlib-chunk":
            self.out.send({**chunk, "z": True, "end": True}, b"this is not zlib data" * 10)
            return
        self.out.send({**chunk, "end": True}, b"x" * min(size, 5))

    def on_put(self, request_id: int, frame: Frame) -> None:
        written = []
        while True:
            part = self.requests.get()
            if part.type == "item":
                written.append([part.header.get("path"), part.header.get("entry")])
            elif part.type == "end":
                break
        self.out.send({"t": "result", "id": request_id, "written": written, "problems": [], "w": 1})

    def on_delete(self, request_id: int, frame: Frame) -> None:
        self.out.send({"t": "result", "id": request_id, "written": [], "problems": [], "w": 1})

    def on_digest(self, request_id: int, frame: Frame) -> None:
        self.out.send({"t": "result", "id": request_id, "digests": {}})

    def on_other(self, request_id: int, frame: Frame) -> None:
        self.out.send({"t": "error", "id": request_id, "message": f"unknown request {frame.type}"})


def settings() -> dict[str, str]:
    mode = os.environ.get("PODSYNC_HOSTILE_MODE", "")
    if mode:
        return {"mode": mode, "outside": os.environ.get("PODSYNC_HOSTILE_OUTSIDE", "/tmp")}
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    with open(os.path.join(here, "hostile-mode"), encoding="utf-8") as handle:
        loaded: dict[str, str] = json.load(handle)
    return loaded


def main(argv: list[str]) -> int:
    if argv == ["bomb"]:  # build the cached zip bomb ahead of time (takes seconds)
        bomb()
        return 0
    if len(argv) != 2 or argv[0] != "serve":
        sys.stderr.write("usage: agent.py serve ROOT\n")
        return 2
    signal.alarm(LIFETIME_SECONDS)  # never outlive a test, whatever podsync does
    config = settings()
    mode = config["mode"]
    if mode not in MODES:
        sys.stderr.write(f"hostile agent: unknown mode {mode!r}\n")
        return 2
    sys.stderr.write(f"hostile agent: {mode}: {MODES[mode]}\n")
    sys.stderr.flush()
    Hostile(mode, os.path.abspath(argv[1]), config.get("outside", "/tmp")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The in-container agent: serves one sync root over stdin/stdout.

Owns: request dispatch inside the container. May import: the standard library and the other
shipped packages (``errors``, ``limits``, ``core``, ``wire``, ``replica``); nothing else, since
it runs on whatever ``python3`` (>= 3.9) the container has, from a zipapp.

Requests are handled one at a time on the main thread, in arrival order. A second thread
forwards watcher hints. Writes to stdout are serialised by a lock (one frame at a time). Logs go
to stderr, which the engine forwards into the sync log. The agent exits on ``bye``, on end of
input, or when it has heard nothing for ``AGENT_IDLE_EXIT_SECONDS`` (exec channels that cannot
signal end of input still end the process).
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
import zlib
from typing import Any, Dict, List, Optional, Tuple

from podsync.core.entry import DIR, FILE, LINK, Entry, Problem
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath, is_within, minimal_roots, relpath
from podsync.errors import PodsyncError, ProtocolError
from podsync.limits import AGENT_IDLE_EXIT_SECONDS, CHUNK_BYTES
from podsync.replica import Replica
from podsync.replica.watch import make_watcher
from podsync.wire import messages as m
from podsync.wire.frames import Decoder, Frame, encode, handshake_bytes

#: A burst of watch events ends after this much quiet (bounded by the MAX).
HINT_SETTLE_SECONDS = 0.002
HINT_SETTLE_MAX_SECONDS = 0.05
#: Echo suppression remembers our own writes this long (swept when the map grows past
#: RECENT_MIN_LIMIT entries).
RECENT_SECONDS = 5.0
RECENT_MIN_LIMIT = 4096


def log(message: str) -> None:
    sys.stderr.write("agent: " + message + "\n")
    sys.stderr.flush()


class _Put:
    """State of one ``put`` stream: the file being received and what was done so far."""

    def __init__(self, request_id: int) -> None:
        self.id = request_id
        self.writer: Any = None
        self.path: Optional[RelPath] = None
        self.skip = False
        self.written: List[List[Any]] = []
        self.problems: List[Problem] = []


class Server:
    def __init__(self, root: str, infd: int = 0, outfd: int = 1) -> None:
        self.root = root
        self.infd = infd
        self.outfd = outfd
        self.out_lock = threading.Lock()
        self.replica: Optional[Replica] = None
        self.watcher: Any = None
        self.stopping = threading.Event()
        self.put: Optional[_Put] = None
        self.compress = False
        #: What our own writes left at each path (echo suppression), with the time.
        self.recent: Dict[RelPath, Tuple[Optional[Entry], float]] = {}
        self.recent_lock = threading.Lock()
        #: Completed put/delete requests; hint listings carry the count they include.
        self.writes = 0
        self.recent_limit = RECENT_MIN_LIMIT

    # -- output -------------------------------------------------------------------------
    def send(self, header: Dict[str, Any], body: bytes = b"") -> None:
        self._write(encode(header, body))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        with self.out_lock:
            while view:
                n = os.write(self.outfd, view)
                view = view[n:]

    # -- main loop ----------------------------------------------------------------------
    def serve(self) -> int:
        self._write(handshake_bytes())
        decoder = Decoder("podsync")
        try:
            while not self.stopping.is_set():
                ready, _, _ = select.select([self.infd], [], [], AGENT_IDLE_EXIT_SECONDS)
                if not ready:
                    log("no message from podsync for a while; exiting")
                    return 0
                data = os.read(self.infd, 1 << 18)
                if not data:
                    return 0
                for frame in decoder.feed(data):
                    self.dispatch(frame)
        finally:
            self.stopping.set()
            if self.watcher is not None:
                self.watcher.close()
        return 0

    def dispatch(self, frame: Frame) -> None:
        kind = frame.type
        if kind in ("item", "chunk", "end"):
            self._put_frame(frame)
            return
        request_id = m.int_field(frame.header, "id")
        try:
            handler = getattr(self, "on_" + kind, None)
            if handler is None:
                raise ProtocolError(f"podsync sent an unknown request {kind!r}")
            handler(request_id, frame)
        except (PodsyncError, OSError) as exc:
            self.send({"t": "error", "id": request_id, "message": str(exc)})

    # -- requests -----------------------------------------------------------------------
    def on_hello(self, request_id: int, frame: Frame) -> None:
        rules = Rules.from_wire(frame.header.get("rules"))
        trash = None
        self.compress = bool(frame.header.get("compress"))
        self.replica = Replica(self.root, prune=rules.prune, trash_dir=trash)
        removed = self.replica.cleanup_temps()
        watching = "off"
        if frame.header.get("watch"):
            self.watcher = make_watcher(self.root, rules.prune)
            self.watcher.start()
            watching = str(getattr(self.watcher, "mode", "on"))
            threading.Thread(target=self._forward_hints, daemon=True).start()
        self.send(
            {
                "t": "result",
                "id": request_id,
                "python": "%d.%d.%d" % sys.version_info[:3],
                "pid": os.getpid(),
                "root": self.root,
                "watcher": watching,
                "granularity": self.replica.mtime_granularity_ns,
                "temps_removed": removed,
                "fsid": _fsid(self.root),
            }
        )

    def _forward_hints(self) -> None:
        """Forward watcher events as hints, each with a fresh listing of the hinted subtrees
        (saves the engine a round trip), minus the echoes of our own writes."""
        while not self.stopping.is_set():
            try:
                paths = self.watcher.wait(0.5)
                if paths:
                    paths = self._settle(paths)
            except Exception as exc:  # the watcher thread must never die silently
                log(f"watcher failed ({exc}); asking for a full rescan")
                paths = [""]
                self.stopping.wait(1.0)
            if paths and not self.stopping.is_set():
                self._send_hints(paths)

    def _settle(self, paths: List[RelPath]) -> List[RelPath]:
        """Gather the rest of a burst (a save is often several events within a millisecond)."""
        gathered = set(paths)
        deadline = time.monotonic() + HINT_SETTLE_MAX_SECONDS
        while time.monotonic() < deadline:
            more = self.watcher.wait(HINT_SETTLE_SECONDS)
            if not more:
                break
            gathered.update(more)
        return sorted(gathered)

    def _send_hints(self, paths: List[RelPath]) -> None:
        rep = self._rep()
        roots = minimal_roots(paths)
        if "" in roots:
            self.send({"t": "hints", "paths": [""]})
            return
        # Read before listing: a listing is stamped with the writes it surely includes, so
        # the engine never trusts one taken before a write whose result it has already seen.
        writes = self.writes
        listing = rep.scan(roots)
        roots = [r for r in roots if not self._is_echo(r, listing)]
        if not roots:
            return
        fresh = {p: e for p, e in listing.items() if any(is_within(p, r) for r in roots)}
        body, compressed = m.encode_listing(fresh)
        header = {"t": "hints", "paths": roots, "listing": True, "z": compressed, "w": writes}
        self.send(header, body)

    def _is_echo(self, root: RelPath, listing: Dict[RelPath, Entry]) -> bool:
        """True when ``root`` (a file, link or absent path) is exactly what we last wrote."""
        with self.recent_lock:
            if root not in self.recent:
                return False
            written = self.recent[root][0]
        now = listing.get(root)
        if written is None:
            return now is None
        if now is None or now.kind == DIR:
            return False
        return now.same_content(written)

    def _remember(self, path: RelPath, entry: Optional[Entry]) -> None:
        now = time.monotonic()
        with self.recent_lock:
            self.recent[path] = (entry, now)
            if len(self.recent) > self.recent_limit:
                cutoff = now - RECENT_SECONDS
                for key in [k for k, (_, t) in self.recent.items() if t < cutoff]:
                    del self.recent[key]
                # Amortised: when most entries are still fresh (an initial sync writes 10k
                # files within seconds), the next sweep waits until the map has doubled
                # instead of rescanning it on every write (that was quadratic: 3.6 s of
                # CPU for 10k files).
                self.recent_limit = max(RECENT_MIN_LIMIT, 2 * len(self.recent))

    def _rep(self) -> Replica:
        if self.replica is None:
            raise ProtocolError("podsync sent a request before hello")
        return self.replica

    def on_ping(self, request_id: int, frame: Frame) -> None:
        self.send({"t": "result", "id": request_id})

    def on_bye(self, request_id: int, frame: Frame) -> None:
        self.send({"t": "result", "id": request_id})
        self.stopping.set()

    def on_scan(self, request_id: int, frame: Frame) -> None:
        rep = self._rep()
        under = m.paths_from_wire(frame.header.get("under", []))
        snapshot = rep.scan(under)
        body, compressed = m.encode_listing(snapshot)
        warnings = list(rep.warnings)
        del rep.warnings[:]
        self.send({"t": "result", "id": request_id, "z": compressed, "warnings": warnings}, body)

    def on_digest(self, request_id: int, frame: Frame) -> None:
        rep = self._rep()
        paths = m.paths_from_wire(frame.header.get("paths"))
        self.send({"t": "result", "id": request_id, "digests": {p: rep.digest(p) for p in paths}})

    def on_delete(self, request_id: int, frame: Frame) -> None:
        rep = self._rep()
        items = frame.header.get("items")
        if not isinstance(items, list):
            raise ProtocolError("delete without items")
        written: List[List[Any]] = []
        problems: List[Problem] = []
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise ProtocolError(f"malformed delete item {item!r}")
            path = relpath(item[0])
            outcome = rep.delete(path, m.expect_from_wire(item[1]))
            if isinstance(outcome, Problem):
                problems.append(outcome)
            else:
                written.append([path, None])
                self._remember(path, None)
        self.writes += 1
        self.send(
            {
                "t": "result",
                "id": request_id,
                "written": written,
                "problems": m.problems_to_wire(problems),
                "w": self.writes,
            }
        )

    def on_get(self, request_id: int, frame: Frame) -> None:
        rep = self._rep()
        problems: List[Problem] = []
        compress = bool(frame.header.get("compress", self.compress))
        chunk = frame.header.get("chunk", CHUNK_BYTES)
        if not isinstance(chunk, int) or not 4096 <= chunk <= CHUNK_BYTES:
            chunk = CHUNK_BYTES
        for path in m.paths_from_wire(frame.header.get("paths")):
            try:
                self._send_one(request_id, rep, path, compress, chunk)
            except OSError as exc:
                problems.append(Problem(path, f"cannot read: {exc.strerror or exc}"))
        self.send({"t": "result", "id": request_id, "problems": m.problems_to_wire(problems)})

    def _send_one(
        self, request_id: int, rep: Replica, path: RelPath, compress: bool, chunk: int
    ) -> None:
        opened = rep.open_read(path)
        if opened is None:
            entry = rep.entry(path)
            if entry is not None and entry.kind in (DIR, LINK):
                self.send({"t": "item", "id": request_id, "path": path, "entry": entry.to_wire()})
            return
        entry, handle = opened
        with handle:
            self.send({"t": "item", "id": request_id, "path": path, "entry": entry.to_wire()})
            while True:
                data = handle.read(chunk)
                last = len(data) < chunk
                header: Dict[str, Any] = {"t": "chunk", "id": request_id}
                if last:
                    header["end"] = True
                    now = rep.entry(path)
                    if now is None or not now.same_content(entry):
                        header["changed"] = True
                if compress and data:
                    packed = zlib.compress(data, 1)
                    if len(packed) < len(data) * 0.9:
                        header["z"] = True
                        data = packed
                self.send(header, data)
                if last:
                    return

    def on_put(self, request_id: int, frame: Frame) -> None:
        self._rep()
        self.put = _Put(request_id)

    def _put_frame(self, frame: Frame) -> None:
        put = self.put
        if put is None:
            raise ProtocolError(f"podsync sent {frame.type!r} outside a put")
        rep = self._rep()
        if frame.type == "item":
            self._put_item(put, rep, frame)
        elif frame.type == "chunk":
            self._put_chunk(put, frame)
        else:
            self.put = None
            self.writes += 1
            self.send(
                {
                    "t": "result",
                    "id": put.id,
                    "written": put.written,
                    "problems": m.problems_to_wire(put.problems),
                    "w": self.writes,
                }
            )

    def _put_item(self, put: _Put, rep: Replica, frame: Frame) -> None:
        path = relpath(frame.header.get("path"))
        entry = Entry.from_wire(frame.header.get("entry"))
        expect = m.expect_from_wire(frame.header.get("expect"))
        put.path, put.writer, put.skip = path, None, False
        try:
            if entry.kind == FILE:
                put.writer = rep.begin_write(path, entry, expect)
                return
            if entry.kind == DIR:
                outcome = rep.make_dir(path, entry, expect)
            else:
                outcome = rep.make_link(path, entry, expect)
        except (OSError, PodsyncError) as exc:
            outcome = Problem(path, f"cannot write: {exc}")
        self._record(put, path, outcome)

    def _put_chunk(self, put: _Put, frame: Frame) -> None:
        if put.path is None or put.skip:
            return
        end = bool(frame.header.get("end"))
        try:
            if put.writer is None:
                raise ProtocolError("podsync sent content for a path that is not a file")
            data = zlib.decompress(frame.body) if frame.header.get("z") else frame.body
            put.writer.write(data)
            if not end:
                return
            if frame.header.get("changed"):
                put.writer.abort()
                outcome: Any = Problem(put.path, "changed while being sent; will retry")
            else:
                outcome = put.writer.commit()
        except (OSError, PodsyncError, zlib.error) as exc:
            if put.writer is not None:
                put.writer.abort()
            outcome = Problem(put.path, f"cannot write: {exc}")
            put.skip = True
        self._record(put, put.path, outcome)
        put.writer = None

    def _record(self, put: _Put, path: RelPath, outcome: Any) -> None:
        if isinstance(outcome, Problem):
            put.problems.append(outcome)
        else:
            put.written.append([path, outcome.to_wire()])
            self._remember(path, outcome)


def _fsid(root: str) -> Optional[str]:
    """Identity of the filesystem holding ``root``: a random id kept outside it, joined with
    the hostname (a new pod or a recreated container has neither)."""
    import hashlib

    folder = "/tmp/.podsync/ids"
    name = hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()
    path = os.path.join(folder, name)
    try:
        with open(path) as handle:
            value = handle.read().strip()
        if len(value) != 32:
            raise OSError("malformed id")
    except OSError:
        value = os.urandom(16).hex()
        try:
            os.makedirs(folder, exist_ok=True)
            temp = f"{path}.{os.getpid()}"
            with open(temp, "w") as handle:
                handle.write(value)
            os.replace(temp, path)
        except OSError:
            return None
    return f"{os.uname().nodename}:{value}"


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "serve":
        sys.stderr.write("usage: agent serve ROOT\n")
        return 2
    root = args[1]
    if not os.path.isdir(root):
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            sys.stderr.write(f"agent: cannot create {root}: {exc.strerror}\n")
            return 1
    return Server(os.path.abspath(root)).serve()

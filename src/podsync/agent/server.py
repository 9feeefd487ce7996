"""The in-container agent: serves one sync root over stdin/stdout.

Owns: request dispatch inside the container (hello, scan, digest, delete; put/get live in
``agent.transfer``), the watcher's hints and the container's filesystem identity. May import:
the standard library and the other shipped packages (``errors``, ``limits``, ``core``,
``wire``, ``replica``); nothing else, since it runs on whatever ``python3`` (>= 3.9) the
container has, from a zipapp, started with ``-X utf8`` (file names are bytes; those that are
not UTF-8 travel as surrogate escapes, see ``wire.frames``).

Requests are handled one at a time on the main thread, in arrival order; ``agent.link`` reads
and writes the pipe on threads of its own (control messages are answered at once, even while
a request runs for minutes). A hint thread forwards watcher events. Nothing a request meets on
disk ends the agent: per-path trouble is a Problem or a warning, a failed request an ``error``
answer. The agent exits on ``bye``, on end of input, or after AGENT_IDLE_EXIT_SECONDS of
silence, removing the temp file of a transfer it was in the middle of.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from podsync.agent.identity import FSID_DIR, filesystem_id
from podsync.agent.link import Link, Stopped, error_text, log
from podsync.agent.transfer import Transfers
from podsync.core.entry import DIR, Entry, Problem
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath, is_within, minimal_roots, parent
from podsync.errors import PodsyncError, ProtocolError
from podsync.limits import BATCH_BYTES, BATCH_PATHS, LISTING_CHUNK_ENTRIES
from podsync.replica import Replica
from podsync.replica.watch import make_watcher
from podsync.wire import messages as m
from podsync.wire.frames import Frame

#: A burst of watch events ends after this much quiet (bounded by the MAX).
HINT_SETTLE_SECONDS = 0.002
HINT_SETTLE_MAX_SECONDS = 0.05
#: Echo suppression remembers our own writes this long (swept when the map grows past
#: RECENT_MIN_LIMIT entries).
RECENT_SECONDS = 5.0
RECENT_MIN_LIMIT = 4096
#: Warnings sent per scan (the rest are counted in one more line).
WARNINGS_PER_SCAN = 1000
WARN_FRAME_LINES = 100
DIGEST_CHUNK = 1 << 20


def bounded_roots(roots: List[RelPath]) -> List[RelPath]:
    """``roots`` widened to their parents until they fit one message (a burst of 50k new
    files in one folder becomes that folder)."""
    while len(roots) > BATCH_PATHS or sum(map(m.path_weight, roots)) > BATCH_BYTES:
        roots = minimal_roots({parent(r) for r in roots})
    return roots


class Server:
    def __init__(self, root: str, infd: int = 0, outfd: int = 1, fsid_dir: str = FSID_DIR):
        self.root = root
        self.fsid_dir = fsid_dir
        self.link = Link(infd, outfd)
        self.replica: Optional[Replica] = None
        self.watcher: Any = None
        self.transfers = Transfers(self.link, self._remember)
        self.link.on_force_exit = self._abort_put
        #: What our own writes left at each path (echo suppression), with the time.
        self.recent: Dict[RelPath, Tuple[Optional[Entry], float]] = {}
        self.recent_lock = threading.Lock()
        self.recent_limit = RECENT_MIN_LIMIT
        self.warn_lock = threading.Lock()
        self.scan_lock = threading.Lock()

    # -- main loop ---------------------------------------------------------------------------
    def serve(self) -> int:
        self.link.start()
        try:
            while True:
                self.dispatch(self.link.next_frame())
        except Stopped:
            pass
        finally:
            self._abort_put()
            if self.watcher is not None:
                self.watcher.close()
            self.link.finished()
        return 0

    def _abort_put(self) -> None:
        put = self.transfers.put
        if put is not None:
            put.abort()

    def dispatch(self, frame: Frame) -> None:
        kind = frame.type
        try:
            request_id = m.int_field(frame.header, "id", 1)
        except ProtocolError as exc:
            log(f"ignored a {kind!r} message: {exc}")
            return
        self.link.begin(request_id)
        try:
            handler = getattr(self, "on_" + kind, None)
            if handler is None:
                raise ProtocolError(f"podsync sent an unknown request {kind!r}")
            handler(request_id, frame)
        except Stopped:
            raise
        except Exception as exc:  # a failed request is an answer, never the end of the agent
            text = error_text(exc)
            if not isinstance(exc, (PodsyncError, OSError)):
                log(f"request {kind!r} failed: {text}")
            self.link.send({"t": "error", "id": request_id, "message": text})
        finally:
            self.link.end()

    def _rep(self) -> Replica:
        if self.replica is None:
            raise ProtocolError("podsync sent a request before hello")
        return self.replica

    def _prune(self, rules: Rules) -> Any:
        """The rules' prune, also counting progress and noticing a stop (called for every
        entry a scan, a temp cleanup or a recursive delete meets)."""
        link = self.link
        prune = rules.prune

        def counted(path: str, is_dir: bool) -> bool:
            link.units += 1
            if link.stopping.is_set():
                raise Stopped()
            return prune(path, is_dir)

        return counted

    # -- requests ----------------------------------------------------------------------------
    def on_hello(self, request_id: int, frame: Frame) -> None:
        rules = Rules.from_wire(frame.header.get("rules"))
        self.replica = Replica(self.root, prune=self._prune(rules))
        removed = self.replica.cleanup_temps()
        watching = "off"
        if m.flag(frame.header, "watch") and self.watcher is None:
            self.watcher = make_watcher(self.root, rules.prune)
            self.watcher.start()
            watching = str(getattr(self.watcher, "mode", "on"))
            threading.Thread(target=self._forward_hints, name="podsync-hints", daemon=True).start()
        self.link.send(
            {
                "t": "result",
                "id": request_id,
                "python": "%d.%d.%d" % sys.version_info[:3],
                "pid": os.getpid(),
                "root": self.root,
                "watcher": watching,
                "granularity": self.replica.mtime_granularity_ns,
                "temps_removed": removed,
                "fsid": filesystem_id(self.root, self.fsid_dir),
            }
        )

    def on_scan(self, request_id: int, frame: Frame) -> None:
        rep = self._rep()
        under = m.paths_from_wire(frame.header.get("under", []))
        snapshot, unreadable = self._scan(rep, under)
        self._send_warnings()
        for piece in m.listing_pieces(snapshot, self._too_long):
            if request_id in self.link.cancelled:
                self.link.cancelled.discard(request_id)
                break
            body, compressed = m.encode_listing(piece)
            self.link.send({"t": "list", "id": request_id, "z": compressed}, body)
            self.link.work(len(piece) + 1)
        self._send_warnings()
        # What the scan could not read is unknown, not gone: the engine keeps what it knew
        # there (widened to parents when many, which keeps more, never less).
        unknown = bounded_roots(minimal_roots(unreadable)) if unreadable else []
        self.link.send({"t": "result", "id": request_id, "unreadable": unknown})

    def _scan(
        self, rep: Replica, under: List[RelPath]
    ) -> Tuple[Dict[RelPath, Entry], List[RelPath]]:
        """A scan and the paths it could not read, taken together (the hint thread scans
        too, and the replica keeps only the latest scan's list)."""
        with self.scan_lock:
            return rep.scan(under), list(rep.unreadable)

    def _too_long(self, path: RelPath) -> None:
        rep = self._rep()
        rep.warnings.append(f"{path[:200]}...: skipped: its path is too long to send")

    def on_digest(self, request_id: int, frame: Frame) -> None:
        rep = self._rep()
        digests: Dict[str, Optional[str]] = {}
        for path in m.paths_from_wire(frame.header.get("paths")):
            try:
                digests[path] = self._digest(rep, path)
            except Stopped:
                raise
            except Exception:
                digests[path] = None
        self.link.send({"t": "result", "id": request_id, "digests": digests})

    def _digest(self, rep: Replica, path: RelPath) -> Optional[str]:
        opened = rep.open_read(path)
        if opened is None:
            return None
        digest = hashlib.sha256()
        with opened[1] as handle:
            while True:
                data = handle.read(DIGEST_CHUNK)
                if not data:
                    return digest.hexdigest()
                digest.update(data)
                self.link.work(len(data))
                if self.link.stopping.is_set():
                    raise Stopped()

    def on_delete(self, request_id: int, frame: Frame) -> None:
        rep = self._rep()
        items = frame.header.get("items")
        if not isinstance(items, list) or len(items) > BATCH_PATHS:
            raise ProtocolError("delete without a batch of items")
        written: List[List[Any]] = []
        problems: List[Problem] = []
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise ProtocolError(f"malformed delete item {item!r:.100}")
            path = m.path_from_wire(item[0])
            expect = m.expect_from_wire(item[1])
            self.link.work()
            try:
                outcome = rep.delete(path, expect)
            except Stopped:
                raise
            except Exception as exc:
                outcome = Problem(path, f"cannot delete: {error_text(exc)}")
            if isinstance(outcome, Problem):
                problems.append(outcome)
            else:
                written.append([path, None])
                self._remember(path, None)
        self.transfers.writes += 1
        self.link.send(
            {
                "t": "result",
                "id": request_id,
                "written": written,
                "problems": m.problems_to_wire(problems),
                "w": self.transfers.writes,
            }
        )

    def on_get(self, request_id: int, frame: Frame) -> None:
        self.transfers.on_get(self._rep(), request_id, frame)

    def on_put(self, request_id: int, frame: Frame) -> None:
        self.transfers.on_put(self._rep(), request_id)

    # -- warnings ----------------------------------------------------------------------------
    def _send_warnings(self) -> None:
        """Send the replica's new warnings (skipped paths) in bounded ``warn`` frames."""
        rep = self.replica
        if rep is None:
            return
        with self.warn_lock:
            lines = rep.warnings[:]
            del rep.warnings[: len(lines)]
        if len(lines) > WARNINGS_PER_SCAN:
            more = len(lines) - WARNINGS_PER_SCAN
            lines = [*lines[:WARNINGS_PER_SCAN], f"... and {more} more skipped paths"]
        for at in range(0, len(lines), WARN_FRAME_LINES):
            self.link.send({"t": "warn", "lines": lines[at : at + WARN_FRAME_LINES]})

    # -- hints -------------------------------------------------------------------------------
    def _forward_hints(self) -> None:
        """Forward watcher events as hints, each with a fresh listing of the hinted subtrees
        when it fits one message (saves the engine a round trip), minus the echoes of our own
        writes. Whatever goes wrong here asks the engine for a full rescan; never dies."""
        while not self.link.stopping.is_set():
            try:
                paths = self.watcher.wait(0.5)
                # wait() returns as soon as the watcher has events: when the change was seen
                # (the engine's latency figures, converted to its clock: engine.latency).
                seen = time.time()
                if paths:
                    paths = self._settle(paths)
                if paths and not self.link.stopping.is_set():
                    self._send_hints(paths, seen)
            except Stopped:
                return
            except Exception as exc:
                log(f"watching failed ({error_text(exc)}); asking for a full rescan")
                try:
                    self.link.send({"t": "hints", "paths": [""]})
                except Stopped:
                    return
                self.link.stopping.wait(1.0)

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

    def _send_hints(self, paths: List[RelPath], seen: Optional[float] = None) -> None:
        rep = self._rep()
        roots = bounded_roots(minimal_roots(paths))
        stamp = {} if seen is None else {"at": seen}
        if "" in roots:
            self.link.send({"t": "hints", "paths": [""], **stamp})
            return
        # Read before listing: a listing is stamped with the writes it surely includes, so
        # the engine never trusts one taken before a write whose result it has already seen.
        writes = self.transfers.writes
        try:
            listing, unreadable = self._scan(rep, roots)
        except OSError as exc:
            log(f"could not list {len(roots)} changed paths ({error_text(exc)})")
            unreadable = roots
        if unreadable:
            # The engine must learn what is unknown: it asks with a scan, whose answer says.
            self.link.send({"t": "hints", "paths": roots, **stamp})
            return
        self._send_warnings()
        roots = [r for r in roots if not self._is_echo(r, listing)]
        if not roots:
            return
        fresh = {p: e for p, e in listing.items() if any(is_within(p, r) for r in roots)}
        pieces = list(m.listing_pieces(fresh)) if len(fresh) <= LISTING_CHUNK_ENTRIES else []
        if len(pieces) != 1 or len(pieces[0]) != len(fresh):
            # Too large for one message: the engine asks with a (streamed) scan.
            self.link.send({"t": "hints", "paths": roots, **stamp})
            return
        body, compressed = m.encode_listing(fresh)
        header = {"t": "hints", "paths": roots, "listing": True, "z": compressed, "w": writes}
        header.update(stamp)
        self.link.send(header, body)

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


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "serve":
        log("usage: agent serve ROOT")
        return 2
    root = args[1]
    try:
        if not os.path.isdir(root):
            os.makedirs(root, exist_ok=True)
        code = Server(os.path.abspath(root)).serve()
    except Exception as exc:  # one line for podsync's log, never a traceback
        log(f"cannot serve {root}: {error_text(exc)}")
        code = 1
    # Everything was written with os.write (nothing buffered). Exiting here, not through the
    # interpreter's shutdown, ends the reader and writer threads at once: a thread blocked in
    # a read or write would otherwise be torn down by finalisation (pthread_exit), which
    # aborts in images without libgcc_s.
    os._exit(code)

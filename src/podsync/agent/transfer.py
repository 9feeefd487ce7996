"""File content in and out of the agent: ``put`` (receive and commit) and ``get`` (send).

Owns: the put loop (items, chunks, results in bounded pieces as items commit) and the get
loop (files streamed in chunks, cancellable between chunks). May import: the standard library,
the shipped packages and ``podsync.agent.link``. Ships inside the container.

Everything podsync sends is checked here as well: a chunk may not carry more than the item
announced (checked on every chunk, so a runaway stream never grows a temp file beyond the
announced size), compressed data may not inflate beyond what is left of it, and any per-path
trouble (an OSError, an absurd mtime the OS refuses) is a Problem for that path, never the
end of the agent.

A bulk put (the initial sync) is bound by the kernel's file creation, not by Python: a small
file that arrived whole is committed by one of a few threads (temp file, write, rename: the
same atomic write) while the next ones arrive, so the creations overlap. Results are reported
as each commit finishes; the put's final result waits for all of them. The first files of a
put (a save in watch mode) are written at once, without the hand-off.
"""

from __future__ import annotations

import collections
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Deque, Dict, List, Optional, Tuple

from podsync.agent.link import Link, Stopped, error_text
from podsync.core.entry import DIR, FILE, LINK, Entry, Problem
from podsync.core.paths import RelPath
from podsync.errors import PodsyncError, ProtocolError
from podsync.limits import BATCH_BYTES, BATCH_PATHS, CHUNK_BYTES
from podsync.replica import Replica
from podsync.wire import messages as m
from podsync.wire.frames import Frame

#: Put results are sent at least this often while a put lasts (progress for the engine).
DONE_EVERY_SECONDS = 1.0
#: The most a ``get`` may send ahead of what podsync consumed (podsync says how much less).
WINDOW_MAX = 64 << 20
#: Threads committing whole small files (kernel work: they release the GIL).
WRITE_THREADS = 4
#: A file up to this size is gathered whole and committed by a thread; larger ones stream.
POOLED_FILE_BYTES = 1 << 20
#: Content handed to the threads and not yet written, at most (memory stays bounded).
POOLED_MAX_BYTES = 16 << 20
POOLED_MAX_FILES = 256
#: The first files of a put are written at once, as they arrive: only a bulk put (the
#: initial sync, a checkout) is handed to the threads; a save in watch mode never is.
POOLED_AFTER_FILES = 32


def write_whole(rep: Replica, path: RelPath, entry: Entry, expect: Any, data: bytes) -> Any:
    """One file's atomic write (``Replica.begin_write``/``commit``): its Entry or a Problem."""
    try:
        writer = rep.begin_write(path, entry, expect)
        try:
            writer.write(data)
            return writer.commit()
        finally:
            writer.abort()  # no-op after a commit
    except Exception as exc:  # per-path trouble never ends the agent
        return Problem(path, f"cannot write: {error_text(exc)}")


class Put:
    """State of one ``put`` stream: the file being received and the results not yet sent."""

    def __init__(self, request_id: int) -> None:
        self.id = request_id
        self.writer: Any = None
        self.path: Optional[RelPath] = None
        self.size = 0
        self.received = 0
        self.skip = False
        self.written: List[List[Any]] = []
        self.problems: List[Problem] = []
        self.pending_bytes = 0
        self.flushed_at = time.monotonic()
        #: The file being gathered whole for a thread (instead of ``writer``), its entry and
        #: expectation.
        self.gathered: Optional[List[bytes]] = None
        self.entry: Optional[Entry] = None
        self.expect: Any = None
        #: Commits handed to the threads, oldest first, and the bytes they hold.
        self.pooled: Deque[Tuple[RelPath, int, Future[Any]]] = collections.deque()
        self.pooled_bytes = 0
        #: Small files received whole so far.
        self.files = 0

    @property
    def receiving(self) -> bool:
        return self.writer is not None or self.gathered is not None

    def abort(self) -> None:
        """Drop the file being received (its temp file goes)."""
        writer, self.writer = self.writer, None
        self.gathered = None
        if writer is not None:
            writer.abort()


class Transfers:
    """put/get for one :class:`Replica` over one :class:`Link`. ``remember`` is told what our
    own writes left at each path (echo suppression of watch hints)."""

    def __init__(self, link: Link, remember: Any) -> None:
        self.link = link
        self.remember = remember
        self.put: Optional[Put] = None
        #: Completed put/delete requests; hint listings carry the count they include.
        self.writes = 0
        self._pool: Optional[ThreadPoolExecutor] = None

    # -- put -----------------------------------------------------------------------------------
    def on_put(self, rep: Replica, request_id: int) -> None:
        put = self.put = Put(request_id)
        try:
            while True:
                frame = self.link.next_frame()
                kind = frame.type
                if kind == "item":
                    self._finish_unended(put)
                    self._item(put, rep, frame)
                elif kind == "chunk":
                    self._chunk(put, rep, frame)
                elif kind == "end":
                    self._finish_unended(put)
                    self._collect(put, wait=True)
                    self.writes += 1
                    self._flush(put, final=True)
                    return
                else:
                    raise ProtocolError(f"podsync sent {kind!r} in the middle of a put")
                self._collect(put, wait=False)
                self._flush(put, final=False)
        finally:
            put.abort()
            self._collect(put, wait=True, stopping=True)  # handed over: written, remembered
            self.put = None

    def _finish_unended(self, put: Put) -> None:
        if put.receiving and put.path is not None:
            put.abort()
            put.problems.append(Problem(put.path, "its content ended early; will retry"))

    def _collect(self, put: Put, wait: bool, stopping: bool = False) -> None:
        """Record the pooled commits that finished (all of them when ``wait``). While the put
        ends on an error, a commit interrupted by the stop is only waited for."""
        while put.pooled and (wait or put.pooled[0][2].done()):
            path, size, future = put.pooled.popleft()
            put.pooled_bytes -= size
            try:
                outcome = future.result()
            except BaseException:
                if stopping:
                    continue
                raise
            self._record(put, path, outcome)
            if not stopping:
                self._flush(put, final=False)  # a full batch goes at once: pieces stay bounded

    def _commit_whole(self, put: Put, rep: Replica, path: RelPath, data: bytes) -> Any:
        """Commit a gathered file: at once when nothing else is queued (one save: no
        hand-off latency), else by a thread; None when pooled (recorded later)."""
        entry, expect = put.entry, put.expect
        assert entry is not None
        put.files += 1
        if put.files <= POOLED_AFTER_FILES or (not put.pooled and self.link.idle()):
            return write_whole(rep, path, entry, expect, data)
        while put.pooled and (
            put.pooled_bytes + len(data) > POOLED_MAX_BYTES or len(put.pooled) >= POOLED_MAX_FILES
        ):
            put.pooled[0][2].result()  # wait for the oldest; _collect records it
            self._collect(put, wait=False)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="podsync-write")
        future = self._pool.submit(write_whole, rep, path, entry, expect, data)
        put.pooled.append((path, len(data), future))
        put.pooled_bytes += len(data)
        return None

    def _item(self, put: Put, rep: Replica, frame: Frame) -> None:
        path = m.path_from_wire(frame.header.get("path"))
        entry = Entry.from_wire(frame.header.get("entry"))
        expect = m.expect_from_wire(frame.header.get("expect"))
        put.path, put.size, put.received, put.skip = path, entry.size, 0, False
        self.link.work()
        try:
            if entry.kind == FILE and entry.size <= POOLED_FILE_BYTES:
                put.gathered, put.entry, put.expect = [], entry, expect
                return
            if entry.kind == FILE:
                put.writer = rep.begin_write(path, entry, expect)
                return
            if entry.kind == DIR:
                outcome: Any = rep.make_dir(path, entry, expect)
            else:
                outcome = rep.make_link(path, entry, expect)
        except Stopped:
            raise
        except Exception as exc:  # per-path trouble never ends the agent
            outcome = Problem(path, f"cannot write: {error_text(exc)}")
        self._record(put, path, outcome)

    def _chunk(self, put: Put, rep: Replica, frame: Frame) -> None:
        path = put.path
        if path is None or put.skip:
            return
        end = m.flag(frame.header, "end")
        try:
            if not put.receiving:
                raise ProtocolError("podsync sent content for a path that is not a file")
            left = put.size - put.received
            data = frame.body
            if m.flag(frame.header, "z"):
                data = m.inflate(data, min(left, CHUNK_BYTES), "a chunk from podsync")
            if len(data) > left:
                raise ProtocolError(f"podsync sent more than the {put.size} bytes it announced")
            if put.gathered is not None:
                put.gathered.append(data)
            else:
                put.writer.write(data)
            put.received += len(data)
            self.link.work(len(data) + 1)
            if not end:
                return
            if m.flag(frame.header, "changed"):
                put.abort()
                outcome: Any = Problem(path, "changed while being sent; will retry")
            elif put.gathered is not None:
                whole, put.gathered = b"".join(put.gathered), None
                outcome = self._commit_whole(put, rep, path, whole)
                if outcome is None:
                    return
            else:
                writer, put.writer = put.writer, None
                try:
                    outcome = writer.commit()
                except Exception:
                    writer.abort()
                    raise
        except Stopped:
            raise
        except (PodsyncError, zlib.error, Exception) as exc:
            put.abort()
            outcome = Problem(path, f"cannot write: {error_text(exc)}")
            put.skip = True
        put.writer = None
        self._record(put, path, outcome)

    def _record(self, put: Put, path: RelPath, outcome: Any) -> None:
        if isinstance(outcome, Problem):
            put.problems.append(outcome)
            put.pending_bytes += len(outcome.message)
        else:
            put.written.append([path, outcome.to_wire()])
            self.remember(path, outcome)
        put.pending_bytes += m.path_weight(path) + 64

    def _flush(self, put: Put, final: bool) -> None:
        """Send the results gathered so far: at the end (``result``), or as a ``done`` piece
        when a batch is full, a second has passed, or podsync has nothing more queued."""
        count = len(put.written) + len(put.problems)
        if not final:
            due = count >= BATCH_PATHS or put.pending_bytes >= BATCH_BYTES
            if count and not due and not put.receiving:
                due = time.monotonic() - put.flushed_at >= DONE_EVERY_SECONDS
            if not due:
                return
        header: Dict[str, Any] = {
            "t": "result" if final else "done",
            "id": put.id,
            "written": put.written,
            "problems": m.problems_to_wire(put.problems),
        }
        if final:
            header["w"] = self.writes
        self.link.send(header)
        put.written, put.problems, put.pending_bytes = [], [], 0
        put.flushed_at = time.monotonic()

    # -- get -----------------------------------------------------------------------------------
    def on_get(self, rep: Replica, request_id: int, frame: Frame) -> None:
        paths = m.paths_from_wire(frame.header.get("paths"))
        compress = m.flag(frame.header, "compress")
        chunk = frame.header.get("chunk", CHUNK_BYTES)
        if not isinstance(chunk, int) or not 4096 <= chunk <= CHUNK_BYTES:
            chunk = CHUNK_BYTES
        window = frame.header.get("window", WINDOW_MAX)
        if not isinstance(window, int) or not chunk <= window <= WINDOW_MAX:
            window = max(chunk, min(4 * CHUNK_BYTES, WINDOW_MAX))
        problems: List[Problem] = []
        cancelled = False
        self.link.open_window(request_id, window)
        try:
            for path in paths:
                if request_id in self.link.cancelled:
                    cancelled = True
                    break
                try:
                    if not self._send_one(request_id, rep, path, compress, chunk):
                        cancelled = True
                        break
                except Stopped:
                    raise
                except Exception as exc:
                    problems.append(Problem(path, f"cannot read: {error_text(exc)}"))
        finally:
            self.link.close_window(request_id)
        result: Dict[str, Any] = {
            "t": "result",
            "id": request_id,
            "problems": m.problems_to_wire(problems),
        }
        if cancelled:
            self.link.cancelled.discard(request_id)
            result["cancelled"] = True
        self.link.send(result)

    def _send_one(
        self, request_id: int, rep: Replica, path: RelPath, compress: bool, chunk: int
    ) -> bool:
        """Stream one path; False when the request was cancelled meanwhile."""
        self.link.work()
        opened = rep.open_read(path)
        if opened is None:
            entry = rep.entry(path)
            if entry is not None and entry.kind in (DIR, LINK):
                self.link.send(
                    {"t": "item", "id": request_id, "path": path, "entry": entry.to_wire()}
                )
            return True
        entry, handle = opened
        with handle:
            self.link.send({"t": "item", "id": request_id, "path": path, "entry": entry.to_wire()})
            left = entry.size
            while True:
                if request_id in self.link.cancelled:
                    return False
                try:
                    # Never more than announced: a file that grew is "changed", not longer.
                    data = handle.read(min(chunk, left))
                except OSError as exc:
                    self.link.send({"t": "chunk", "id": request_id, "end": True, "changed": True})
                    raise exc
                left -= len(data)
                last = len(data) < chunk or left == 0
                header: Dict[str, Any] = {"t": "chunk", "id": request_id}
                if last:
                    header["end"] = True
                    now = rep.entry(path)
                    if left or now is None or not now.same_content(entry):
                        header["changed"] = True
                if compress and data:
                    packed = zlib.compress(data, 1)
                    if len(packed) < len(data) * 0.9:
                        header["z"] = True
                        data = packed
                if not self.link.spend(request_id, len(data)):
                    return False
                self.link.send(header, data)
                self.link.work(len(data) + 1)
                if last:
                    return True

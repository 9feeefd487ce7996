"""The agent's two ends of the pipe: a reader thread and a writer thread.

Owns: reading and decoding stdin, answering control messages at once, the bounded queue of
requests to the main thread, the output lanes, acknowledgements and progress reports, and how
the agent stops. May import: the standard library, ``podsync.errors``, ``podsync.limits`` and
``podsync.wire``. Ships inside the container (Python 3.9, stdlib only).

Why threads: the main thread may work on one request for minutes (hashing, scanning, writing a
large file). Control messages must not wait behind it: the reader thread answers ``ping`` with
an ``ack`` of the bytes read so far, records ``cancel`` and ends the agent on ``bye`` or end of
input while the main thread works. Requests go to the main thread through a bounded queue, so
a slow disk still slows podsync down (the reader stops reading when the queue is full).

Output: one writer thread owns stdout. Control frames (acks, progress) go before queued data
frames, never in the middle of one. Every KEEPALIVE_SECONDS the writer acknowledges what was
read and, while a request is worked on and its work counter moved, reports ``progress``: the
engine judges liveness by these, not by a reply within a fixed time.

Stopping (``bye``, end of input, a broken stdout, AGENT_IDLE_EXIT_SECONDS of silence): the main
thread sees :class:`Stopped` at its next step and aborts what it was doing (a half-written temp
file is removed). If it is stuck for EXIT_GRACE_SECONDS, the process exits anyway.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import select
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Set

from podsync.errors import PodsyncError, ProtocolError
from podsync.limits import AGENT_IDLE_EXIT_SECONDS, KEEPALIVE_SECONDS
from podsync.wire.frames import Decoder, Frame, encode, handshake_bytes, printable

#: Batches of request (and put) frames waiting for the main thread: each batch is what one
#: read of stdin completed (at most a frame plus a read), so a few MiB at most.
INBOX_BATCHES = 8
#: Data frames waiting for the writer; small frames are written together up to WRITE_BYTES.
OUTBOX_BYTES = 4 << 20
WRITE_BYTES = 256 * 1024
#: After the agent was told to stop, the main thread gets this long to finish by itself.
EXIT_GRACE_SECONDS = 2.0
#: Cancelled request ids remembered (a cancel for a request already done is harmless).
CANCELS_KEPT = 64


class Stopped(BaseException):
    """The agent is stopping: raised in the main thread (and the hint thread) at their next
    step. A BaseException so that per-path ``except Exception`` handlers let it through."""


def log(message: str) -> None:
    """One line on stderr (forwarded into podsync's sync.log); never raises, whatever the
    bytes of the names in ``message``."""
    line = ("agent: " + printable(message, 2000) + "\n").encode("utf-8", "backslashreplace")
    with contextlib.suppress(OSError):
        os.write(2, line)


class Link:
    """stdin/stdout of the agent as frames; see the module docstring."""

    def __init__(self, infd: int = 0, outfd: int = 1) -> None:
        self.infd = infd
        self.outfd = outfd
        self.stopping = threading.Event()
        self.reason = ""
        #: Bytes read from stdin so far (acknowledged to the engine).
        self.rx = 0
        #: The request the main thread works on, and a counter it advances as it works.
        self.current: Optional[int] = None
        self.units = 0
        self.cancelled: Set[int] = set()
        #: Bytes of chunk bodies podsync lets a ``get`` send ahead (flow control: what podsync
        #: has not consumed yet stays small, so a stall here shows there within the liveness
        #: whatever the bandwidth limit).
        self._credit: Dict[int, int] = {}
        self._window: Dict[int, int] = {}
        self._credit_cond = threading.Condition()
        #: Called (from another thread) just before a forced exit: remove temp files.
        self.on_force_exit: Callable[[], None] = lambda: None
        self._inbox: "queue.Queue[Optional[List[Frame]]]" = queue.Queue(INBOX_BATCHES)
        self._ready: Deque[Frame] = collections.deque()  # the main thread's current batch
        self._cond = threading.Condition()
        self._control: Deque[bytes] = collections.deque()
        self._data: Deque[bytes] = collections.deque()
        self._data_bytes = 0
        self._main_done = threading.Event()

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._write_all(handshake_bytes())
        for target, name in ((self._read_loop, "reader"), (self._write_loop, "writer")):
            threading.Thread(target=target, name=f"podsync-agent-{name}", daemon=True).start()

    def stop(self, reason: str) -> None:
        """Begin stopping (any thread). Idempotent."""
        if self.stopping.is_set():
            return
        self.reason = reason
        self.stopping.set()
        with contextlib.suppress(queue.Full):  # when full, the main thread polls ``stopping``
            self._inbox.put_nowait(None)
        with self._cond:
            self._cond.notify_all()
        with self._credit_cond:
            self._credit_cond.notify_all()
        threading.Thread(target=self._exit_if_stuck, name="podsync-agent-exit", daemon=True).start()

    def finished(self) -> None:
        """The main thread is done (called last thing before the process exits)."""
        self._main_done.set()
        self.stop(self.reason or "done")

    def _exit_if_stuck(self) -> None:
        if self._main_done.wait(EXIT_GRACE_SECONDS):
            return
        log(f"stopping ({self.reason}) took more than {EXIT_GRACE_SECONDS:g} s; exiting now")
        try:
            self.on_force_exit()
        finally:
            os._exit(0)

    # -- input -------------------------------------------------------------------------------
    def next_frame(self) -> Frame:
        """The next request frame for the main thread; :class:`Stopped` when stopping."""
        while True:
            if self.stopping.is_set():
                raise Stopped()
            if self._ready:
                return self._ready.popleft()
            try:
                batch = self._inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if batch is None:
                raise Stopped()
            self._ready.extend(batch)

    def queue_frames(self, frames: List[Frame]) -> bool:
        """Queue ``frames`` for the main thread, waiting while the queue is full (this is the
        backpressure that reaches the pipe); False when stopping."""
        while not self.stopping.is_set():
            try:
                self._inbox.put(frames, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def idle(self) -> bool:
        """True when no request frame waits for the main thread."""
        return not self._ready and self._inbox.empty()

    def _read_loop(self) -> None:
        decoder = Decoder("podsync")
        reason = "end of input"
        try:
            while not self.stopping.is_set():
                ready, _, _ = select.select([self.infd], [], [], AGENT_IDLE_EXIT_SECONDS)
                if not ready:
                    reason = f"no message from podsync for {AGENT_IDLE_EXIT_SECONDS:g} s"
                    break
                data = os.read(self.infd, 1 << 18)
                if not data:
                    break
                self.rx += len(data)
                if not self._take(decoder.feed(data)):
                    reason = "podsync said bye"
                    break
        except ProtocolError as exc:
            reason = str(exc)
            log(reason)
        except OSError as exc:
            reason = f"cannot read input: {exc.strerror or exc}"
        self.stop(reason)

    def _take(self, frames: List[Frame]) -> bool:
        """Handle control frames at once and queue the rest; False on ``bye``."""
        requests: List[Frame] = []
        for frame in frames:
            kind = frame.type
            if kind == "ping":
                self.control(self._pong(frame.header))
            elif kind == "cancel":
                self._cancel(frame.header.get("id"))
            elif kind == "credit":
                self._grant(frame.header.get("id"), frame.header.get("n"))
            elif kind == "bye":
                return False
            else:
                requests.append(frame)
        return not requests or self.queue_frames(requests)

    def _pong(self, ping: Dict[str, Any]) -> Dict[str, Any]:
        """The answer to a ``ping``: an ``ack``; a numbered ping also gets its number back
        with our wall clock, taken now (the engine's clock offset: ``engine.latency``)."""
        answer: Dict[str, Any] = {"t": "ack", "rx": self.rx}
        number = ping.get("n")
        if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 1 << 53:
            answer["n"] = number
            answer["at"] = time.time()
        return answer

    def _cancel(self, request_id: Any) -> None:
        if isinstance(request_id, int):
            if len(self.cancelled) >= CANCELS_KEPT:
                self.cancelled.clear()
            self.cancelled.add(request_id)
            with self._credit_cond:
                self._credit_cond.notify_all()

    def _grant(self, request_id: Any, amount: Any) -> None:
        if isinstance(request_id, int) and isinstance(amount, int) and amount > 0:
            with self._credit_cond:
                if request_id in self._credit:
                    self._credit[request_id] += amount
                    self._credit_cond.notify_all()

    # -- output ------------------------------------------------------------------------------
    def control(self, header: Dict[str, Any]) -> None:
        """Queue a small frame ahead of all data; never blocks."""
        with self._cond:
            self._control.append(encode(header))
            self._cond.notify_all()

    def send(self, header: Dict[str, Any], body: bytes = b"") -> None:
        """Queue a data frame; blocks while OUTBOX_BYTES are waiting (backpressure). Raises
        :class:`Stopped` when the agent is stopping."""
        frame = encode(header, body)
        with self._cond:
            while self._data_bytes >= OUTBOX_BYTES and not self.stopping.is_set():
                self._cond.wait(0.5)
            if self.stopping.is_set():
                raise Stopped()
            self._data.append(frame)
            self._data_bytes += len(frame)
            self._cond.notify_all()

    def open_window(self, request_id: int, window: int) -> None:
        """A ``get`` may send ``window`` bytes of chunks before podsync grants more."""
        with self._credit_cond:
            self._credit = {request_id: window}
            self._window = {request_id: window}

    def close_window(self, request_id: int) -> None:
        with self._credit_cond:
            self._credit.pop(request_id, None)
            self._window.pop(request_id, None)

    def spend(self, request_id: int, amount: int) -> bool:
        """Wait until podsync lets ``request_id`` send ``amount`` more bytes, and take them.
        False when the request was cancelled meanwhile; :class:`Stopped` when stopping. A
        chunk larger than the whole window goes once nothing is outstanding."""
        with self._credit_cond:
            while True:
                if self.stopping.is_set():
                    raise Stopped()
                if request_id in self.cancelled:
                    return False
                credit = self._credit.get(request_id, amount)
                if credit >= amount or credit >= self._window.get(request_id, 0):
                    if request_id in self._credit:
                        self._credit[request_id] = credit - amount
                    return True
                self._credit_cond.wait(0.5)

    def begin(self, request_id: int) -> None:
        self.current = request_id
        self.units += 1

    def work(self, amount: int = 1) -> None:
        """The main thread made progress on the current request."""
        self.units += amount

    def end(self) -> None:
        self.current = None

    def _write_loop(self) -> None:
        acked = 0
        reported = (self.current, self.units)
        next_tick = time.monotonic() + KEEPALIVE_SECONDS
        try:
            while True:
                with self._cond:
                    while not (self._control or self._data or self.stopping.is_set()):
                        wait = next_tick - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    if self.stopping.is_set():
                        return
                    out = list(self._control)
                    self._control.clear()
                    size = 0
                    while self._data and (not out or size < WRITE_BYTES):
                        frame = self._data.popleft()
                        self._data_bytes -= len(frame)
                        size += len(frame)
                        out.append(frame)
                    self._cond.notify_all()
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + KEEPALIVE_SECONDS
                    rx, current, units = self.rx, self.current, self.units
                    if rx != acked:
                        out.insert(0, encode({"t": "ack", "rx": rx}))
                        acked = rx
                    if current is not None and (current, units) != reported:
                        out.insert(0, encode({"t": "progress", "id": current}))
                    reported = (current, units)
                if out:
                    self._write_all(b"".join(out))
        except OSError as exc:
            self.stop(f"cannot write output: {exc.strerror or exc}")

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.outfd, view)
            view = view[n:]


def error_text(exc: BaseException) -> str:
    """One line for an unexpected exception (sent to podsync, never a traceback)."""
    if isinstance(exc, PodsyncError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f": {printable(str(exc.filename), 200)}" if exc.filename is not None else ""
        return (exc.strerror or str(exc)) + where
    return f"{type(exc).__name__}: {exc}"


__all__ = ["Link", "Stopped", "error_text", "log"]

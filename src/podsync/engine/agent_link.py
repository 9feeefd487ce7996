"""The engine's end of the pipe to the Python agent: frames out and in, liveness, failure.

Owns: the writer task (a priority lane: control frames go before queued data, never in the
middle of a frame), the reader task (decoding and routing each frame to the request waiting
for it), the watchdog (is the agent taking in what we send and making progress on what we
asked?), and the one failure every waiter sees. May import: the standard library,
``podsync.errors``, ``podsync.limits``, ``podsync.wire``, ``podsync.transport.base`` and
``podsync.engine.agent_requests``.

Liveness is judged by progress, never by a reply within a fixed time: the agent acknowledges
the bytes it has read (``ack``), answers ``ping`` at once from its reader thread, and reports
``progress`` on a long request. The agent is *stalled* when, for ``liveness`` seconds during
which this side was ready to receive, either bytes we sent stayed unacknowledged or an open
request saw no frame. Time spent waiting for a slow consumer here (a throttled download, a
slow local disk) does not count. A failure is a flag that every waiter checks (never an item
in a queue that may be full), so it always reaches whoever waits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

from podsync.engine.agent_requests import FrameHandler, Request, result_of
from podsync.engine.latency import PingClock
from podsync.errors import PeerStalled, PodsyncError, ProtocolError, TransportError
from podsync.limits import BYE_WAIT_SECONDS, LIVENESS_SECONDS, PING_INTERVAL_SECONDS
from podsync.transport.base import Channel
from podsync.wire import messages as m
from podsync.wire.frames import Decoder, Frame, encode, handshake_bytes, printable

#: Frames of a put are gathered up to this size before one write to the pipe; at most
#: OUT_BYTES of data wait for the writer (backpressure on whoever sends).
SEND_BUFFER_BYTES = 256 * 1024
OUT_BYTES = 2 * SEND_BUFFER_BYTES
#: Frames that may wait for the consumer of a request (a download: see AgentEndpoint).
INBOX_FRAMES = 64
INBOX_BYTES = 4 << 20
#: Cancelled request ids whose stray frames are dropped.
CANCELLED_KEPT = 256
#: How long close() waits for the agent to take its ``bye`` and for the channel to end.
KILL_WAIT_SECONDS = 0.8


def liveness_seconds() -> float:
    """LIVENESS_SECONDS, or PODSYNC_LIVENESS_SECONDS (1-300) for tests and odd links."""
    raw = os.environ.get("PODSYNC_LIVENESS_SECONDS", "")
    try:
        return min(300.0, max(1.0, float(raw))) if raw else LIVENESS_SECONDS
    except ValueError:
        return LIVENESS_SECONDS


class AgentLink:
    """Frames to and from one agent over ``channel``; see the module docstring."""

    def __init__(
        self,
        channel: Channel,
        *,
        on_hints: FrameHandler,
        on_warn: FrameHandler,
        on_failure: Callable[[PodsyncError], None] = lambda exc: None,
        stderr_tail: Callable[[], str] = lambda: "",
        liveness: float | None = None,
    ) -> None:
        self.channel = channel
        self.liveness = liveness if liveness is not None else liveness_seconds()
        self.failure: PodsyncError | None = None
        #: What the sync is doing now, for messages ("during the upload of x").
        self.activity = ""
        self._on_hints = on_hints
        self._on_warn = on_warn
        self._on_failure = on_failure
        self._stderr_tail = stderr_tail
        self._decoder = Decoder("the agent")
        self._ids = itertools.count(1)
        self._requests: dict[int, Request] = {}
        self._cancelled: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._exclusive = asyncio.Lock()
        # output
        self._control: collections.deque[bytes] = collections.deque([handshake_bytes()])
        self._data: collections.deque[bytes] = collections.deque()
        self._data_bytes = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._writing = False
        # liveness clocks (monotonic seconds)
        now = time.monotonic()
        self._tx = 0
        self._acked = 0
        self._unacked_since = now
        self._last_tx = now
        self._work_at = now
        self._reader_blocked = False
        self._reader_free_since = now
        self._tasks: list[asyncio.Task[None]] = []
        #: The agent's clock relative to ours, from numbered pings (``engine.latency``).
        self.clock = PingClock()

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer (the handshake is its first write), reader and watchdog."""
        for loop in (self._write_loop, self._read_loop, self._watch_loop):
            self._tasks.append(asyncio.create_task(loop()))

    async def close(self) -> None:
        """Say ``bye`` (ahead of any queued data), let the agent end by itself for a moment,
        then kill it. Bounded: about BYE_WAIT_SECONDS + KILL_WAIT_SECONDS at most."""
        for request in self._requests.values():
            request.inbox.close()  # nobody reads them now: the reader must not wait for room
        if self.failure is None:
            self._data.clear()
            self._data_bytes = 0
            self._pending.clear()
            self._pending_bytes = 0
            self.control({"t": "bye"})
            with contextlib.suppress(asyncio.TimeoutError, PodsyncError, OSError):
                await asyncio.wait_for(self._bye_then_wait(), BYE_WAIT_SECONDS)
        self._end(TransportError("the connection to the agent was closed"))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError, PodsyncError, OSError):
            await asyncio.wait_for(self.channel.kill(), KILL_WAIT_SECONDS)

    async def _bye_then_wait(self) -> None:
        while self._control or self._writing:
            await asyncio.sleep(0.005)
        await self.channel.close_stdin()
        await self.channel.wait()

    def fail(self, exc: BaseException) -> None:
        """The connection is broken: every waiter (now and later) raises ``exc``."""
        if self.failure is not None:
            return
        if not isinstance(exc, PodsyncError):
            exc = TransportError(f"the connection to the agent broke: {exc}")
        self._end(exc)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def _end(self, exc: PodsyncError) -> None:
        if self.failure is None:
            self.failure = exc
            self._on_failure(exc)
        for request in self._requests.values():
            request.inbox.wake()
        self._wake.set()
        self._room.set()

    def _lost(self) -> PodsyncError:
        """The far side went away: say what was going on."""
        tail = printable(self._stderr_tail().strip())
        if self._decoder.peer_version is None:
            said = self._decoder.printed or tail
            return TransportError("the agent did not start" + (f": {said}" if said else ""))
        during = f" {self.activity}" if self.activity else ""
        if tail:
            return TransportError(f"the agent stopped{during}: {tail}")
        return TransportError(f"the container stopped (killed?){during}".rstrip())

    # -- requests ----------------------------------------------------------------------------
    def exclusive(self) -> asyncio.Lock:
        """Held while a request's frames are sent, so two requests never interleave (a put
        holds it from ``put`` to ``end``)."""
        return self._exclusive

    def open(self, kind: str, frames: int = INBOX_FRAMES, nbytes: int = INBOX_BYTES) -> Request:
        if self.failure is not None:
            raise self.failure
        request = Request(self, next(self._ids), kind, frames, nbytes)
        self._requests[request.id] = request
        self._work_at = time.monotonic()
        return request

    def finish(self, request: Request) -> None:
        """The consumer is done with ``request``; if the agent has not ended it, cancel it."""
        request.inbox.close()
        if self._requests.pop(request.id, None) is not None and self.failure is None:
            self._cancelled[request.id] = None
            while len(self._cancelled) > CANCELLED_KEPT:
                self._cancelled.popitem(last=False)
            self.control({"t": "cancel", "id": request.id})

    def grant(self, request: Request, amount: int) -> None:
        """Let ``request`` (a get) send ``amount`` more bytes: what we consumed. The agent
        then has new work, so its silence counts from now."""
        if self.failure is None and request.id in self._requests and amount > 0:
            self.control({"t": "credit", "id": request.id, "n": amount})
            self._work_at = time.monotonic()

    async def call(self, header: dict[str, Any]) -> Frame:
        """Send one request and return its ``result`` frame (AgentError for ``error``)."""
        request = self.open(str(header["t"]), frames=4)
        try:
            async with self._exclusive:
                await self.send({**header, "id": request.id})
            return result_of(await request.inbox.get())
        finally:
            self.finish(request)

    # -- output ------------------------------------------------------------------------------
    def control(self, header: dict[str, Any]) -> None:
        """Queue a control frame ahead of all data (never blocks, never mid-frame)."""
        self._control.append(encode(header))
        self._wake.set()

    async def send(self, header: dict[str, Any], body: bytes = b"", flush: bool = True) -> None:
        """Queue a data frame; hand the gathered frames to the writer when ``flush`` or when
        they are large. Waits while OUT_BYTES wait for the writer (backpressure)."""
        if self.failure is not None:
            raise self.failure
        frame = encode(header, body)
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if flush or self._pending_bytes >= SEND_BUFFER_BYTES:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            while self._data_bytes >= OUT_BYTES and self.failure is None:
                self._room.clear()
                await self._room.wait()
            if self.failure is not None:
                raise self.failure
            self._data.append(data)
            self._data_bytes += len(data)
            self._wake.set()

    def abandon(self, request: Request) -> None:
        """End a put that will not be finished (its producer failed): an ``end`` with
        ``abort`` after what was sent, so the agent drops the half-received file and answers.
        Never waits; nothing to do once the link has failed."""
        if self.failure is not None:
            return
        self._pending.append(encode({"t": "end", "id": request.id, "abort": True}))
        self._data.append(b"".join(self._pending))
        self._data_bytes += len(self._data[-1])
        self._pending.clear()
        self._pending_bytes = 0
        self._wake.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                while not (self._control or self._data):
                    self._wake.clear()
                    await self._wake.wait()
                now = time.monotonic()
                if self._control:
                    data = b"".join(self._control)
                    self._control.clear()
                else:
                    data = self._data.popleft()
                    self._data_bytes -= len(data)
                    self._room.set()
                    # New work for the agent (a slow producer here is not the agent's fault).
                    self._work_at = now
                if self._tx <= self._acked:
                    self._unacked_since = now
                self._tx += len(data)
                self._last_tx = now
                self._writing = True
                try:
                    await self.channel.write(data)
                finally:
                    self._writing = False
        except asyncio.CancelledError:
            raise
        except TransportError:
            self.fail(self._lost())
        except BaseException as exc:
            self.fail(exc)

    # -- input -------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.channel.read(1 << 18)
                if not data:
                    self.fail(self._lost())
                    return
                for frame in self._decoder.feed(data):
                    await self._route(frame)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fail(exc)

    async def _route(self, frame: Frame) -> None:
        kind = frame.type
        header = frame.header
        if kind == "ack":
            self._acknowledged(m.int_field(header, "rx"))
            if "n" in header:  # a numbered ping's answer: maybe the next ping at once
                number, received = m.int_field(header, "n", 1), time.time()
                if self.clock.answer(number, m.time_field(header, "at"), received):
                    self.ping()
            return
        if kind == "hints":
            self._on_hints(frame)
            return
        if kind == "warn":
            self._on_warn(frame)
            return
        request_id = m.int_field(header, "id", 1)
        request = self._requests.get(request_id)
        if request is None:
            if request_id in self._cancelled:
                if kind in ("result", "error"):
                    del self._cancelled[request_id]
                return
            raise ProtocolError(f"the agent sent {kind!r} for request {request_id}, not open")
        # Work on a request shows the agent alive and reading, as an acknowledgement does.
        self._work_at = self._unacked_since = time.monotonic()
        if kind == "progress":
            return
        if kind == "done" and request.on_done is not None:
            request.on_done(frame)
            return
        if kind not in ("result", "error", "list", "item", "chunk"):
            raise ProtocolError(f"the agent sent an unexpected {kind!r} message")
        if kind in ("result", "error"):
            del self._requests[request_id]
        self._reader_blocked = True
        try:
            await request.inbox.put(frame)
        finally:
            self._reader_blocked = False
            self._reader_free_since = time.monotonic()

    def ping(self) -> None:
        """Send a numbered ping (a control frame: before queued data); an agent that knows
        the numbers answers with its clock, which refines ``clock``."""
        self.control(self.clock.ping(time.time()))

    def _acknowledged(self, rx: int) -> None:
        if rx > self._acked:
            self._acked = min(rx, self._tx)
            self._unacked_since = time.monotonic()

    # -- liveness ----------------------------------------------------------------------------
    async def _watch_loop(self) -> None:
        step = min(0.5, self.liveness / 10)
        last = time.monotonic()
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            if now - last > step + 1.0:
                # This process did not run for a while (suspended, overloaded): the agent's
                # frames may be waiting unread, so the clocks start afresh.
                self._reader_free_since = now
            last = now
            stalled = self._stalled(now)
            if stalled is not None:
                self.fail(stalled)
                return
            if self._tx <= self._acked and now - self._last_tx >= PING_INTERVAL_SECONDS:
                self.ping()

    def _stalled(self, now: float) -> PodsyncError | None:
        if self._reader_blocked:
            return None
        since = self._reader_free_since
        limit = self.liveness
        if self._decoder.peer_version is None and now - max(self._work_at, since) > limit:
            printed = self._decoder.printed
            return PeerStalled(
                f"the agent did not start the podsync protocol within {limit:g} s"
                + (f"; it printed: {printed[:200]}" if printed else "")
            )
        if self._requests and now - max(self._work_at, since) > limit:
            oldest = next(iter(self._requests.values()))
            during = f" ({self.activity})" if self.activity else ""
            return PeerStalled(
                f"the agent made no progress on {oldest.kind!r} for {limit:g} s{during};"
                " is the container paused or overloaded?"
            )
        if self._tx > self._acked and now - max(self._unacked_since, since) > limit:
            during = f" {self.activity}" if self.activity else ""
            return PeerStalled(
                f"the agent took in nothing for {limit:g} s{during};"
                " is the container paused or overloaded?"
            )
        return None

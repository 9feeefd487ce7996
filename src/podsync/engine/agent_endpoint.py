"""The container side through the Python agent, over the wire protocol.

Owns: the engine end of the protocol (request ids, the reader task, streaming of puts and
gets, hints). May import: ``podsync.core``, ``podsync.wire``, ``podsync.transport.base``,
``podsync.engine.endpoint``, ``podsync.engine.throttle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from podsync.core.entry import Entry, Problem, Snapshot
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath, is_within, relpath
from podsync.engine.endpoint import DeleteItem, FileItem, WriteResult
from podsync.engine.hintbuffer import HintBuffer
from podsync.engine.throttle import Throttle
from podsync.errors import AgentError, PodsyncError, ProtocolError, TransportError
from podsync.limits import CHUNK_BYTES, COMPRESS_LEVEL, PING_INTERVAL_SECONDS
from podsync.transport.base import Channel
from podsync.wire import messages as m
from podsync.wire.frames import Decoder, Frame, encode, handshake_bytes

#: Frames of a put are gathered up to this size before one write to the pipe.
SEND_BUFFER_BYTES = 256 * 1024


def _consume(future: asyncio.Future[Frame]) -> None:
    """Mark a failed request's exception as seen: the failure is reported once, by whoever
    waits on the connection, not again by asyncio's 'never retrieved' logger."""
    if not future.cancelled():
        future.exception()


class _Stream:
    """Frames of one ``get`` as they arrive (bounded, so a slow consumer slows the agent)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Frame | BaseException | object] = asyncio.Queue(maxsize=64)


class AgentSourceFile:
    def __init__(self, owner: AgentEndpoint, stream: _Stream, path: RelPath, entry: Entry):
        self.path = path
        self.entry = entry
        self._owner = owner
        self._stream = stream
        self.changed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.entry.kind != "file":
            return
        while True:
            frame = await self._owner._next(self._stream)
            if not isinstance(frame, Frame) or frame.type != "chunk":
                raise ProtocolError("the agent interrupted a file it was sending")
            data = zlib.decompress(frame.body) if frame.header.get("z") else frame.body
            await self._owner.download_throttle.take(len(frame.body))
            yield data
            if frame.header.get("end"):
                self.changed = bool(frame.header.get("changed"))
                return


class AgentEndpoint:
    side = "container"

    def __init__(
        self,
        channel: Channel,
        description: str,
        *,
        compress: bool,
        upload_throttle: Throttle,
        download_throttle: Throttle,
        stderr_tail: Callable[[], str] = lambda: "",
    ) -> None:
        self.agent_description = description
        self.mtime_granularity_ns = 1
        self._channel = channel
        self._compress = compress
        self.upload_throttle = upload_throttle
        self.download_throttle = download_throttle
        self._stderr_tail = stderr_tail
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._streams: dict[int, _Stream] = {}
        # The agent already waits for a burst of events to settle before it sends hints, so
        # the engine takes them at once (a second debounce would only add latency).
        self._hints = HintBuffer(quiet=0.0)
        #: Listings that came with hints, by hinted root, until the engine asks for them.
        self._fresh: dict[RelPath, Snapshot] = {}
        self._fresh_writes: dict[RelPath, int] = {}
        #: The agent's count of completed writes, from the latest put/delete result.
        self._agent_writes = 0
        self._failure: BaseException | None = None
        self._decoder = Decoder("the agent")
        self._send_lock = asyncio.Lock()
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._reader: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._closing = False
        self.info: dict[str, Any] = {}
        #: Identity of the container filesystem (see engine.state); None when unknown.
        self.fsid: str | None = None
        #: Problems the agent reported while sending files (drained by the engine).
        self.read_problems: list[Problem] = []

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, rules: Rules, watch: bool) -> None:
        await self._channel.write(handshake_bytes())
        self._reader = asyncio.create_task(self._read_loop())
        reply = await self._request(
            {"t": "hello", "rules": rules.to_wire(), "watch": watch, "compress": self._compress},
            timeout=60,
        )
        self.info = dict(reply.header)
        fsid = reply.header.get("fsid")
        self.fsid = fsid if isinstance(fsid, str) and len(fsid) <= 300 else None
        granularity = reply.header.get("granularity")
        if isinstance(granularity, int) and granularity > 0:
            self.mtime_granularity_ns = granularity
        self._pinger = asyncio.create_task(self._ping_loop())

    async def close(self) -> None:
        # Python 3.11's wait_for returns a result that arrives as it is cancelled and drops
        # the cancellation: the ping loop would go on forever and this close() wait for it
        # (seen as podsync never exiting after an initial sync). The flag ends it anyway.
        self._closing = True
        if self._pinger:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pinger
        if self._failure is None:
            with contextlib.suppress(PodsyncError, asyncio.TimeoutError, OSError):
                await self._request({"t": "bye"}, timeout=2)
        with contextlib.suppress(asyncio.TimeoutError, PodsyncError, OSError):
            await asyncio.wait_for(self._channel.wait(), 3)
        await self._channel.kill()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    # -- plumbing -----------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._channel.read(1 << 18)
                if not data:
                    raise TransportError(self._exit_message())
                for frame in self._decoder.feed(data):
                    await self._dispatch(frame)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    def _exit_message(self) -> str:
        tail = self._stderr_tail().strip()
        return "the agent stopped" + (f": {tail}" if tail else "")

    def _fail(self, exc: BaseException) -> None:
        if not isinstance(exc, PodsyncError):
            exc = TransportError(f"connection to the agent broke: {exc}")
        self._failure = exc
        if self._pinger is not None and self._pinger is not asyncio.current_task():
            self._pinger.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
                future.add_done_callback(_consume)
        for stream in self._streams.values():
            with contextlib.suppress(asyncio.QueueFull):
                stream.queue.put_nowait(exc)
        self._hints.fail(exc)

    async def _dispatch(self, frame: Frame) -> None:
        kind = frame.type
        if kind == "hints":
            paths = m.paths_from_wire(frame.header.get("paths"))
            if frame.header.get("listing"):
                listing = m.decode_listing(frame.body, bool(frame.header.get("z")))
                writes = frame.header.get("w")
                stamp = writes if isinstance(writes, int) else -1
                for root in paths:
                    self._remember_fresh(root, listing, stamp)
            self._hints.add(paths)
            return
        request_id = m.int_field(frame.header, "id")
        if kind in ("item", "chunk") or (kind == "result" and request_id in self._streams):
            stream = self._streams.get(request_id)
            if stream is None:
                raise ProtocolError(f"the agent sent {kind!r} for no open request")
            await stream.queue.put(frame)
            return
        future = self._pending.pop(request_id, None)
        if future is None:
            raise ProtocolError(f"the agent answered request {request_id} twice or unasked")
        if kind == "error":
            future.set_exception(AgentError(f"agent: {frame.header.get('message')}"))
        elif kind == "result":
            future.set_result(frame)
        else:
            raise ProtocolError(f"the agent sent an unknown message {kind!r}")

    def _remember_fresh(self, root: RelPath, listing: Snapshot, writes: int) -> None:
        """Keep the listing of ``root`` that came with a hint; it supersedes older listings
        of paths below it and updates the listings of subtrees that contain it. ``writes`` is
        how many of our writes the agent had completed before it listed."""
        part = {p: e for p, e in listing.items() if is_within(p, root)}
        for known in [q for q in self._fresh if is_within(q, root)]:
            del self._fresh[known]
            del self._fresh_writes[known]
        for outer, snapshot in self._fresh.items():
            if is_within(root, outer):
                for stale in [p for p in snapshot if is_within(p, root)]:
                    del snapshot[stale]
                snapshot.update(part)
                self._fresh_writes[outer] = min(self._fresh_writes[outer], writes)
        self._fresh[root] = part
        self._fresh_writes[root] = writes

    def _note_writes(self, reply: Frame) -> None:
        writes = reply.header.get("w")
        if isinstance(writes, int):
            self._agent_writes = max(self._agent_writes, writes)

    async def _send(self, header: dict[str, Any], body: bytes = b"", flush: bool = True) -> None:
        """Queue a frame; write the queue out when ``flush`` or when it is large. Streams
        (put) pass flush=False so thousands of small files go out in few large writes."""
        if self._failure:
            raise self._failure
        async with self._send_lock:
            self._out.append(encode(header, body))
            self._out_bytes += len(self._out[-1])
            if flush or self._out_bytes >= SEND_BUFFER_BYTES:
                data = b"".join(self._out)
                self._out.clear()
                self._out_bytes = 0
                await self._channel.write(data)

    async def _request(
        self, header: dict[str, Any], body: bytes = b"", timeout: float | None = None
    ) -> Frame:
        request_id = next(self._ids)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._send({**header, "id": request_id}, body)
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TransportError(f"the agent did not answer {header['t']!r} in time") from None

    async def _ping_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(PING_INTERVAL_SECONDS)
            try:
                await self._request({"t": "ping"}, timeout=PING_INTERVAL_SECONDS * 3)
            except PodsyncError as exc:
                self._fail(exc)
                return

    async def _next(self, stream: _Stream) -> Frame | object:
        item = await stream.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    # -- Endpoint -----------------------------------------------------------------------
    async def scan(self, under: Sequence[RelPath] = ()) -> Snapshot:
        if under and all(
            root in self._fresh and self._fresh_writes[root] >= self._agent_writes for root in under
        ):
            # A listing taken before one of our writes completed would undo that write in
            # the engine's picture: only listings that include every write are used.
            # The agent listed these subtrees when it sent the hints: no round trip needed.
            snapshot: Snapshot = {}
            for root in under:
                snapshot.update(self._fresh.pop(root))
                del self._fresh_writes[root]
                for inner in [q for q in self._fresh if is_within(q, root)]:
                    del self._fresh[inner]  # already merged into the root's listing
                    del self._fresh_writes[inner]
            return snapshot
        self._fresh.clear()
        self._fresh_writes.clear()
        reply = await self._request({"t": "scan", "under": list(under)})
        return m.decode_listing(reply.body, bool(reply.header.get("z")))

    async def digests(self, paths: Sequence[RelPath]) -> dict[RelPath, str | None]:
        reply = await self._request({"t": "digest", "paths": list(paths)})
        raw = reply.header.get("digests")
        if not isinstance(raw, dict):
            raise ProtocolError("the agent sent digests in a malformed answer")
        return {relpath(k): (v if isinstance(v, str) else None) for k, v in raw.items()}

    async def read(self, paths: Sequence[RelPath]) -> AsyncIterator[AgentSourceFile]:
        request_id = next(self._ids)
        stream = _Stream()
        self._streams[request_id] = stream
        try:
            await self._send(
                {
                    "t": "get",
                    "id": request_id,
                    "paths": list(paths),
                    "compress": self._compress,
                    "chunk": self.download_throttle.chunk_size(CHUNK_BYTES),
                }
            )
            while True:
                frame = await self._next(stream)
                assert isinstance(frame, Frame)
                if frame.type == "result":
                    self.read_problems.extend(
                        m.problems_from_wire(frame.header.get("problems", []))
                    )
                    return
                if frame.type != "item":
                    raise ProtocolError(f"the agent sent {frame.type!r} where a file should start")
                source = AgentSourceFile(
                    self,
                    stream,
                    relpath(frame.header.get("path")),
                    Entry.from_wire(frame.header.get("entry")),
                )
                yield source
        finally:
            self._streams.pop(request_id, None)

    async def write(self, items: AsyncIterator[FileItem]) -> WriteResult:
        request_id = next(self._ids)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._send({"t": "put", "id": request_id})
        async for item in items:
            await self._send(
                {
                    "t": "item",
                    "path": item.path,
                    "entry": item.entry.to_wire(),
                    "expect": m.expect_to_wire(item.expect),
                },
                flush=False,
            )
            if item.chunks is not None:
                await self._send_chunks(item.chunks)
        await self._send({"t": "end", "id": request_id})
        reply = await future
        self._note_writes(reply)
        return WriteResult(
            m.written_from_wire(reply.header.get("written", [])),
            m.problems_from_wire(reply.header.get("problems", [])),
        )

    async def _send_chunks(self, chunks: AsyncIterator[bytes]) -> None:
        piece = self.upload_throttle.chunk_size(CHUNK_BYTES)
        pending: bytes | None = None
        async for data in chunks:
            # Under a bandwidth limit, chunks are cut small so pacing stays smooth.
            for at in range(0, max(len(data), 1), piece):
                if pending is not None:
                    await self._send_chunk(pending, end=False)
                pending = data[at : at + piece]
        await self._send_chunk(pending or b"", end=True, changed=getattr(chunks, "changed", False))

    async def _send_chunk(self, data: bytes, *, end: bool, changed: bool = False) -> None:
        header: dict[str, Any] = {"t": "chunk"}
        if end:
            header["end"] = True
        if changed:
            header["changed"] = True
        if self._compress and len(data) > 512:
            packed = zlib.compress(data, COMPRESS_LEVEL)
            if len(packed) < len(data) * 0.9:
                header["z"] = True
                data = packed
        await self.upload_throttle.take(len(data))
        await self._send(header, data, flush=self.upload_throttle.limited)

    async def delete(self, items: Sequence[DeleteItem]) -> WriteResult:
        reply = await self._request(
            {"t": "delete", "items": [[i.path, m.expect_to_wire(i.expect)] for i in items]}
        )
        self._note_writes(reply)
        return WriteResult(
            m.written_from_wire(reply.header.get("written", [])),
            m.problems_from_wire(reply.header.get("problems", [])),
        )

    async def hints(self) -> list[RelPath]:
        return await self._hints.take()

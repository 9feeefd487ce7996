"""File content streamed between the engine and the Python agent, chunk by chunk.

Owns: :class:`AgentSourceFile` (a file the agent sends, each chunk checked against the size
its item announced, inflated within that bound, and granted back to the agent's flow-control
window) and :func:`send_chunks` (a file's content sent to the agent, cut small under a
bandwidth limit and compressed when that pays). May import: ``podsync.core``,
``podsync.wire``, ``podsync.limits``, ``podsync.errors`` and ``podsync.engine``
(agent_link, agent_requests, throttle).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from podsync.core.entry import Entry
from podsync.core.paths import RelPath
from podsync.engine.agent_link import AgentLink
from podsync.engine.agent_requests import Request, result_of
from podsync.engine.throttle import Throttle
from podsync.errors import ProtocolError
from podsync.limits import CHUNK_BYTES, COMPRESS_LEVEL
from podsync.wire import messages as m


class AgentSourceFile:
    """A file the agent streams; its chunks are checked against the size it announced."""

    def __init__(
        self, link: AgentLink, throttle: Throttle, request: Request, path: RelPath, entry: Entry
    ):
        self.path = path
        self.entry = entry
        self._link = link
        self._throttle = throttle
        self._request = request
        self.changed = False
        self.finished = entry.kind != "file"

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.finished:
            return
        size = self.entry.size
        received = 0
        what = f"the content of {self.path}"
        while True:
            frame = await self._request.inbox.get()
            if frame.type != "chunk":
                result_of(frame)  # an error answer explains itself
                raise ProtocolError(f"the agent interrupted {what}")
            left = size - received
            data = frame.body
            if m.flag(frame.header, "z"):
                data = m.inflate(data, min(left, CHUNK_BYTES), what)
            if len(data) > left:
                raise ProtocolError(f"the agent sent more than the {size} bytes of {what}")
            received += len(data)
            end = m.flag(frame.header, "end")
            if not data and not end:
                # The agent only sends an empty chunk as the last one: endless empty chunks
                # would look like progress forever.
                raise ProtocolError(f"the agent sent an empty chunk in the middle of {what}")
            if end:
                self.finished = True
                self.changed = m.flag(frame.header, "changed") or received != size
            await self._throttle.take(len(frame.body))
            self._link.grant(self._request, len(frame.body))
            yield data
            if end:
                return

    async def skip(self) -> None:
        """Consume what the consumer left unread of this file."""
        async for _ in self.chunks():
            pass


async def send_chunks(
    link: AgentLink, throttle: Throttle, compress: bool, chunks: AsyncIterator[bytes]
) -> None:
    """Send the content ``chunks`` yields as the chunks of the item just sent on ``link``."""
    piece = throttle.chunk_size(CHUNK_BYTES)
    pending: bytes | None = None
    async for data in chunks:
        # Under a bandwidth limit, chunks are cut small so pacing stays smooth.
        for at in range(0, max(len(data), 1), piece):
            if pending is not None:
                await _send_chunk(link, throttle, compress, pending, end=False)
            pending = data[at : at + piece]
    changed = getattr(chunks, "changed", False)
    await _send_chunk(link, throttle, compress, pending or b"", end=True, changed=changed)


async def _send_chunk(
    link: AgentLink,
    throttle: Throttle,
    compress: bool,
    data: bytes,
    *,
    end: bool,
    changed: bool = False,
) -> None:
    header: dict[str, Any] = {"t": "chunk"}
    if end:
        header["end"] = True
    if changed:
        header["changed"] = True
    if compress and len(data) > 512:
        packed = await _compress(data)
        if len(packed) < len(data) * 0.9:
            header["z"] = True
            data = packed
    await throttle.take(len(data))
    await link.send(header, data, flush=throttle.limited)


async def _compress(data: bytes) -> bytes:
    """zlib of one chunk; a large one off the event loop (zlib releases the GIL), so acks and
    pings keep flowing while it runs."""
    import zlib

    if len(data) < 64 * 1024:
        return zlib.compress(data, COMPRESS_LEVEL)
    return await asyncio.to_thread(zlib.compress, data, COMPRESS_LEVEL)

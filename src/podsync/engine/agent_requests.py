"""What the engine keeps per open request to the agent: where its frames go.

Owns: :class:`Inbox` (the bounded queue of one request's frames, which the link's failure
reaches at once) and :class:`Request`. May import: the standard library, ``podsync.errors``,
``podsync.wire``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Protocol

from podsync.errors import AgentError, PodsyncError, ProtocolError
from podsync.wire import messages as m
from podsync.wire.frames import Frame

FrameHandler = Callable[[Frame], None]


class Failing(Protocol):
    """The link as an inbox sees it: its failure, once it has one."""

    failure: PodsyncError | None


class Inbox:
    """Frames for one request, bounded by count and bytes (a slow consumer slows the agent).
    The link's failure reaches a waiting consumer at once."""

    def __init__(self, link: Failing, max_frames: int, max_bytes: int) -> None:
        self._link = link
        self._items: collections.deque[Frame] = collections.deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._changed = asyncio.Event()
        self.closed = False
        #: The request's answer (``result``/``error``) is queued: nothing more will come.
        self.answered = False

    def _full(self, size: int) -> bool:
        return bool(self._items) and (
            len(self._items) >= self._max_frames or self._bytes + size > self._max_bytes
        )

    async def put(self, frame: Frame) -> None:
        while not self.closed and self._full(len(frame.body)):
            self._changed.clear()
            await self._changed.wait()
        if self.closed:
            return  # the consumer left: nobody wants it
        self._items.append(frame)
        self._bytes += len(frame.body)
        self.answered = self.answered or frame.type in ("result", "error")
        self._changed.set()

    async def get(self) -> Frame:
        """The next frame; the link's failure at once (even before frames still queued, which
        can no longer complete) unless the request's answer has already arrived."""
        while True:
            if self._link.failure is not None and not self.answered:
                raise self._link.failure
            if self._items:
                break
            self._changed.clear()
            await self._changed.wait()
        frame = self._items.popleft()
        self._bytes -= len(frame.body)
        self._changed.set()
        return frame

    def wake(self) -> None:
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._bytes = 0
        self._changed.set()


class Request:
    """One open request: its id, its kind (for messages) and where its frames go. Frames of
    type ``done`` go to ``on_done`` at once (put results: never held up by a consumer)."""

    def __init__(self, link: Failing, request_id: int, kind: str, frames: int, nbytes: int):
        self.id = request_id
        self.kind = kind
        self.inbox = Inbox(link, frames, nbytes)
        self.on_done: FrameHandler | None = None


def result_of(frame: Frame) -> Frame:
    """``frame`` when it is a ``result``; AgentError for an ``error``; else ProtocolError."""
    if frame.type == "result":
        return frame
    if frame.type == "error":
        raise AgentError(f"agent: {m.text_field(frame.header, 'message')}")
    raise ProtocolError(f"the agent sent {frame.type!r} where an answer was due")

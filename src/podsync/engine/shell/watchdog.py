"""Liveness for the shell agent: a transport wrapper that notices a stalled container.

Owns: :class:`WatchedTransport` and :class:`WatchedChannel`. May import: the standard library,
``podsync.errors``, ``podsync.transport.base`` and ``podsync.engine.agent_link`` (the one
liveness period, PODSYNC_LIVENESS_SECONDS).

The shell agent has no protocol of its own to carry pings: each operation is a separate exec
(a ``tar`` upload, a ``tar -c`` download, a ``find`` listing) and the change poller prints a
line every poll interval. So liveness is judged on the pipes, by progress, as for the Python
agent: the container is *stalled* when, for the liveness period, some read or write on one of
its channels was waiting and nothing moved on any of them (no byte read, no write taken in, no
command finished). In watch mode the poller's read always waits and its ticks (every 0.5 s) are
the pulse, so a paused or frozen container is noticed whatever the direction and bandwidth
limit. Then every channel is killed, every pending command is cancelled and every caller gets
one :class:`~podsync.errors.PeerStalled` (the session reconnects). A command run to completion
(``run``) is judged differently when nothing else waits (no poller: ``--no-watch``): a silent
but busy command (``sha256sum`` of a huge file) is no stall, so after the liveness period a
trivial command (``true``) must finish within it too, else (say the container is paused) it
is a stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from podsync.engine.agent_link import liveness_seconds
from podsync.errors import PeerStalled, PodsyncError, TransportError
from podsync.transport.base import Channel, RunResult, StderrSink, Transport

#: How long a command stopped by the watchdog gets to end its local client.
REAP_SECONDS = 1.0


class WatchedTransport:
    """``transport`` with the liveness watchdog described in the module docstring."""

    def __init__(self, transport: Transport, liveness: float | None = None) -> None:
        self.inner = transport
        self.description = transport.description
        self.link_bytes_per_second = transport.link_bytes_per_second
        self.liveness = liveness if liveness is not None else liveness_seconds()
        self.failure: PeerStalled | None = None
        self._channels: set[WatchedChannel] = set()
        self._runs: set[asyncio.Future[RunResult]] = set()
        self._waiting = 0  # channel reads and writes in progress
        self._since = time.monotonic()  # last progress, or when waiting began
        self._ran_since = self._since  # when the oldest pending command began
        self._dog: asyncio.Task[None] | None = None
        self._stalled: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # -- the transport ----------------------------------------------------------------------
    async def spawn(self, argv: Sequence[str], stderr: StderrSink) -> Channel:
        self._check()
        channel = WatchedChannel(await self.inner.spawn(argv, stderr), self)
        if self.failure is not None:
            await channel.kill()
            raise self.failure
        self._channels.add(channel)
        self.progress()
        self._guard()
        return channel

    async def run(
        self, argv: Sequence[str], stdin: bytes = b"", timeout: float = 60.0
    ) -> RunResult:
        self._check()
        stalled = self._event()
        task = asyncio.ensure_future(self.inner.run(argv, stdin, timeout))
        if not self._runs:
            self._ran_since = time.monotonic()
        self._runs.add(task)
        self._guard()
        stop = asyncio.ensure_future(stalled.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            self._runs.discard(task)
            if not task.done():
                task.cancel()
                task.add_done_callback(_retrieve)
        if not task.done() or task.cancelled():  # the watchdog stopped it
            # Let the cancelled command end its local client (bounded) before reporting.
            await asyncio.wait({task}, timeout=REAP_SECONDS)
            raise self.failure or PeerStalled(f"{self.description}: the command was stopped")
        result = task.result()
        self.progress()
        return result

    async def workdir(self) -> str:
        return await self.inner.workdir()

    # -- bookkeeping ------------------------------------------------------------------------
    def progress(self) -> None:
        self._since = time.monotonic()

    def begin(self) -> None:
        self._check()
        if self._waiting == 0:
            self._since = time.monotonic()
        self._waiting += 1

    def end(self) -> None:
        self._waiting -= 1

    def forget(self, channel: WatchedChannel) -> None:
        self._channels.discard(channel)

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _event(self) -> asyncio.Event:
        if self._stalled is None:
            self._stalled = asyncio.Event()
        return self._stalled

    def _guard(self) -> None:
        if self._dog is None or self._dog.done():
            self._dog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        step = min(0.5, self.liveness / 10)
        last = time.monotonic()
        probe: asyncio.Task[None] | None = None
        while self._channels or self._runs:
            await asyncio.sleep(step)
            now = time.monotonic()
            if now - last > step + 1.0:
                self._since = now  # this process was not running: start afresh
            last = now
            quiet = now - max(self._since, self._ran_since if self._runs else now)
            if self._waiting and now - self._since > self.liveness:
                self._stall(
                    f"the container made no progress for {self.liveness:g} s;"
                    " is it paused or overloaded?"
                )
                return
            if not self._waiting and quiet > self.liveness and (probe is None or probe.done()):
                probe = asyncio.ensure_future(self._probe())
        if probe is not None:
            probe.cancel()

    async def _probe(self) -> None:
        """Only commands run and none said anything for the liveness period (a long
        ``sha256sum`` or a paused container?): a trivial command must finish in time."""
        try:
            await self.inner.run(["true"], timeout=self.liveness)
        except (PodsyncError, OSError) as exc:
            if self._runs and self.failure is None:
                self._stall(f"the container made no progress for {self.liveness:g} s: {exc}")
            return
        self.progress()

    def _stall(self, message: str) -> None:
        self.failure = PeerStalled(f"{self.description}: {message}")
        self._event().set()
        for run in list(self._runs):
            run.cancel()
        for channel in list(self._channels):
            task = asyncio.ensure_future(channel.kill())
            task.add_done_callback(_retrieve)


class WatchedChannel:
    """A channel whose reads and writes count for (or against) the container's liveness."""

    def __init__(self, inner: Channel, owner: WatchedTransport) -> None:
        self.inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def read(self, n: int) -> bytes:
        owner = self._owner
        owner.begin()
        try:
            data = await self.inner.read(n)
        except (PodsyncError, OSError):
            if owner.failure is not None:
                raise owner.failure from None
            raise
        finally:
            owner.end()
        if owner.failure is not None:
            raise owner.failure
        if data:
            owner.progress()
        return data

    async def write(self, data: bytes) -> None:
        owner = self._owner
        owner.begin()
        try:
            await self.inner.write(data)
        except (PodsyncError, OSError) as exc:
            if owner.failure is not None:
                raise owner.failure from None
            if isinstance(exc, TransportError):  # the command went away while we wrote
                raise TransportError(
                    f"{owner.description}: the container stopped (killed?) while we sent data"
                ) from exc
            raise
        finally:
            owner.end()
        if owner.failure is not None:
            raise owner.failure
        owner.progress()

    async def close_stdin(self) -> None:
        await self.inner.close_stdin()

    async def wait(self) -> int:
        code = await self.inner.wait()
        self._owner.forget(self)
        return code

    async def kill(self) -> None:
        self._owner.forget(self)
        await self.inner.kill()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume a background task's outcome (no "exception was never retrieved")."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()

"""Helpers for driving the real Python agent through the engine's AgentEndpoint.

Owns: starting the agent (installed with the real bootstrap) on a transport and wrapping it
in an AgentEndpoint, an event loop in a thread to drive it from a test, and the agent's
processes inside a container. May import: the standard library, ``podsync``, ``tests.support``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any, TypeVar

from tests.support import docker as d

from podsync.bootstrap.probe import agent_command, agent_path, install_agent, probe
from podsync.core.entry import FILE, Entry
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath
from podsync.engine.agent_endpoint import AgentEndpoint
from podsync.engine.endpoint import FileItem
from podsync.engine.throttle import Throttle
from podsync.transport.base import Transport

T = TypeVar("T")
MIB = 1 << 20


class Loop:
    """An event loop in a thread: ``run(coro)`` from the test thread, ``start(coro)`` for a
    background task whose outcome is read later with ``result(future)``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def leftovers() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(leftovers(), 30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class AgentSession:
    """A running agent and its endpoint; ``stderr`` and ``warnings`` collect what it said."""

    def __init__(self, endpoint: AgentEndpoint, stderr: collections.deque[str]) -> None:
        self.endpoint = endpoint
        self.stderr = stderr
        self.warnings: list[str] = []


async def start_agent(
    transport: Transport,
    root: str,
    *,
    watch: bool = False,
    liveness: float | None = None,
    upload: int | None = None,
    download: int | None = None,
    compress: bool = False,
    rules: Rules | None = None,
) -> AgentSession:
    """Install (if needed) and start the real agent serving ``root``."""
    found = await probe(transport)
    path = agent_path() if found.installed else await install_agent(transport)
    stderr: collections.deque[str] = collections.deque(maxlen=200)
    channel = await transport.spawn(agent_command(path, root), stderr.append)
    warnings: list[str] = []
    endpoint = AgentEndpoint(
        channel,
        "python agent (test)",
        compress=compress,
        upload_throttle=Throttle(upload),
        download_throttle=Throttle(download),
        stderr_tail=lambda: "; ".join(list(stderr)[-5:]),
        warn=warnings.append,
        liveness=liveness,
    )
    session = AgentSession(endpoint, stderr)
    session.warnings = warnings
    try:
        await endpoint.start(rules or Rules(), watch)
    except BaseException:
        await channel.kill()
        raise
    return session


async def one_file(path: str, data: bytes, mtime_ns: int = 1_700_000_000_000_000_000) -> Any:
    """A put stream of one file."""

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), MIB):
            yield data[at : at + MIB]

    yield FileItem(RelPath(path), Entry(FILE, len(data), mtime_ns), None, chunks())


async def endless_file(path: str, size: int, started: asyncio.Event) -> Any:
    """A put stream of one large file of zeros, produced as it is sent."""

    async def chunks() -> AsyncIterator[bytes]:
        block = bytes(MIB)
        for n in range(0, size, MIB):
            if n >= 4 * MIB:
                started.set()
            yield block[: min(MIB, size - n)]

    yield FileItem(RelPath(path), Entry(FILE, size, 1_700_000_000_000_000_000), None, chunks())


def agent_pids_in(container: str) -> list[str]:
    """PIDs of podsync agents running in ``container`` (none when it is not running)."""
    result = d.docker("exec", container, "ps", "-o", "pid,args")
    lines = result.stdout.decode(errors="replace").splitlines()
    return [ln.split()[0] for ln in lines if "agent-" in ln and " serve " in ln]


def temps_in(container: str, root: str = "/app") -> str:
    result = d.docker("exec", container, "find", root, "-name", ".podsync-*")
    return result.stdout.decode(errors="replace").strip()


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    return await asyncio.wait_for(awaitable, seconds)

"""Helpers for the shell-agent tests: running shell in the test container, endpoints, waits.

Owns: nothing shipped. May import: the standard library, ``podsync`` and ``tests.support``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from tests.support import docker as d

from podsync.core.entry import ANY, FILE, Entry, Expect
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath
from podsync.engine.endpoint import FileItem
from podsync.engine.shell_endpoint import ShellEndpoint
from podsync.transport.base import Channel, StderrSink
from podsync.transport.docker import DockerTransport

T = TypeVar("T")


class Box:
    """One test container: shell commands in it, and endpoints on its /app."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, script: str, *args: str, stdin: bytes = b"", check: bool = True) -> bytes:
        """Run ``script`` with ``sh -c`` in the container; its stdout."""
        result = d.docker_exec(self.name, ["sh", "-c", script, "sh", *args], stdin=stdin)
        if check and result.returncode != 0:
            raise AssertionError(
                f"in-container script failed ({result.returncode}): {script[:200]}\n"
                + result.stderr.decode(errors="replace")
            )
        return result.stdout

    def read(self, path: str) -> bytes:
        return self.sh('cat -- "$1"', path)

    def exists(self, path: str) -> bool:
        return self.sh('[ -e "$1" ] || [ -L "$1" ] && echo yes', path, check=False) == b"yes\n"

    def processes(self) -> list[str]:
        """``STATE COMMAND`` of the container's processes (zombies included) except PID 1
        and the ps itself."""
        out = self.sh("ps -o pid,stat,args").decode(errors="replace").splitlines()[1:]
        rows = [line.strip().split(None, 2) for line in out]
        return [
            f"{row[1]} {row[2]}"
            for row in rows
            if len(row) == 3 and row[0] != "1" and "ps -o pid,stat,args" not in row[2]
        ]

    def endpoint(
        self, rules: Rules | None = None, root: str = "/app", eof: bool = True, **kwargs: object
    ) -> ShellEndpoint:
        warnings: list[str] = []
        transport = DockerTransport(self.name) if eof else NoEofTransport(self.name)
        ep = ShellEndpoint(
            transport,  # type: ignore[arg-type]
            root,
            rules or Rules(),
            warn=warnings.append,
            **kwargs,  # type: ignore[arg-type]
        )
        ep.warnings = warnings  # type: ignore[attr-defined]
        return ep


class NoEofChannel:
    """A channel whose end of input never reaches the far side (Kubernetes' older exec
    protocol cannot send it): close_stdin() does nothing."""

    def __init__(self, inner: Channel) -> None:
        self._inner = inner
        self.read = inner.read
        self.write = inner.write
        self.wait = inner.wait
        self.kill = inner.kill

    async def close_stdin(self) -> None:
        return None


class NoEofTransport:
    """DockerTransport whose spawned commands never see an end of input."""

    def __init__(self, container: str) -> None:
        self._inner = DockerTransport(container)
        self.description = self._inner.description
        self.link_bytes_per_second = self._inner.link_bytes_per_second
        self.run = self._inner.run
        self.workdir = self._inner.workdir

    async def spawn(self, argv: Sequence[str], stderr: StderrSink) -> NoEofChannel:
        return NoEofChannel(await self._inner.spawn(argv, stderr))


def run(coro: Awaitable[T]) -> T:
    """Run one coroutine to completion (tests are plain functions: no pytest-asyncio)."""

    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def chunks(data: bytes, size: int = 1 << 16) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def file_item(
    path: str, data: bytes, mtime_s: int = 1_700_000_000, exe: bool = False, expect: Expect = ANY
) -> FileItem:
    entry = Entry(FILE, len(data), mtime_s * 10**9 + 123_456_789, exe)
    return FileItem(RelPath(path), entry, expect, chunks(data))


async def items_of(items: Sequence[FileItem]) -> AsyncIterator[FileItem]:
    for item in items:
        yield item


async def wait_for(predicate: Callable[[], Awaitable[object]], timeout: float, what: str) -> float:
    """Await ``predicate`` until truthy; the seconds it took. AssertionError at the deadline."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started

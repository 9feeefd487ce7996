"""The one seam between the sync engine and "a command over there".

Owns: the :class:`Transport` and :class:`Channel` protocols. May import: the standard
library and ``podsync.errors``. Knows nothing of sync.

A transport runs a command on the far side (in a container, a pod, over ssh, or locally)
and gives back a full-duplex byte pipe to its stdin/stdout; stderr arrives line by line
through a callback. Implementations: ``local``, ``docker``, ``ssh``, ``kubernetes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

StderrSink = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    """Outcome of a command run to completion."""

    exit_code: int
    stdout: bytes
    stderr: bytes


class Channel(Protocol):
    """A running command's stdin/stdout as a byte pipe."""

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes from the command's stdout; ``b""`` at end of stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Write to the command's stdin and wait until the pipe accepted it (backpressure)."""
        ...

    async def close_stdin(self) -> None:
        """Signal end of input where the transport can (not all can: never rely on it)."""
        ...

    async def wait(self) -> int:
        """Wait for the command to end; its exit code (-1 when unknown)."""
        ...

    async def kill(self) -> None:
        """End the command and release the pipe. Safe to call twice."""
        ...


class Transport(Protocol):
    """Runs commands on one target."""

    #: Human-readable target, e.g. ``docker:my-app`` or ``pod default/web-1:app``.
    description: str
    #: Rough speed of the pipe in bytes/s (None: unknown). Decides whether compressing
    #: pays: a local docker pipe moves ~450 MB/s, faster than zlib in Python.
    link_bytes_per_second: float | None

    async def spawn(self, argv: Sequence[str], stderr: StderrSink) -> Channel:
        """Start ``argv`` over there with piped stdin/stdout."""
        ...

    async def run(
        self, argv: Sequence[str], stdin: bytes = b"", timeout: float = 60.0
    ) -> RunResult:
        """Run ``argv`` to completion, feeding ``stdin``; raises TransportError on timeout."""
        ...

    async def workdir(self) -> str:
        """The target's working directory (the container's WORKDIR), absolute."""
        ...

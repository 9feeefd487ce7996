"""Commands on this machine: the far side is a plain local folder (``--local-target``).

Owns: :class:`LocalTransport`. May import: the standard library, ``podsync.errors`` and
``podsync.transport``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from podsync.transport.base import RunResult, StderrSink
from podsync.transport.process import ProcessChannel, run_process

#: A local pipe moves well over a GB/s: never worth compressing.
LOCAL_PIPE_BYTES_PER_SECOND = 2e9


class LocalTransport:
    """Runs argv as a local subprocess (in its own process group, so kill() ends it all)."""

    def __init__(self, root_hint: Path) -> None:
        self._root = Path(root_hint).absolute()
        self.description = f"local:{self._root}"
        self.link_bytes_per_second: float | None = LOCAL_PIPE_BYTES_PER_SECOND

    def _missing(self, argv: Sequence[str]) -> str:
        return f"{self.description}: {argv[0]} is not installed (not found on PATH)"

    async def spawn(self, argv: Sequence[str], stderr: StderrSink) -> ProcessChannel:
        return await ProcessChannel.start(
            argv, stderr, description=self.description, missing=self._missing(argv), group=True
        )

    async def run(
        self, argv: Sequence[str], stdin: bytes = b"", timeout: float = 60.0
    ) -> RunResult:
        return await run_process(
            argv, stdin, timeout, description=self.description, missing=self._missing(argv)
        )

    async def workdir(self) -> str:
        return str(self._root)

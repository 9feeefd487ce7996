"""The shell agent's liveness watchdog on real local processes (LocalTransport): a channel
that waits with nothing moving is a stall, reported once to every waiter (a pending command
too); a silent command alone is not; a pulse on another channel keeps everything alive.
The e2e proof on paused containers is tests/e2e/test_fault_injection.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.support import docker as d

from podsync.engine.shell.watchdog import WatchedTransport
from podsync.errors import PeerStalled
from podsync.transport.docker import DockerTransport
from podsync.transport.local import LocalTransport

LIVENESS = 1.0


def test_a_silent_channel_is_a_stall_for_every_waiter(tmp_path: Path) -> None:
    async def main() -> tuple[float, BaseException | None, BaseException | None]:
        watched = WatchedTransport(LocalTransport(tmp_path), liveness=LIVENESS)
        channel = await watched.spawn(["sleep", "60"], lambda line: None)
        began = time.monotonic()
        results = await asyncio.gather(
            channel.read(100), watched.run(["sleep", "60"]), return_exceptions=True
        )
        took = time.monotonic() - began
        read, run = (r if isinstance(r, BaseException) else None for r in results)
        try:
            await watched.spawn(["true"], lambda line: None)
            again: BaseException | None = None
        except PeerStalled as exc:
            again = exc
        await channel.kill()  # the watchdog's kill, awaited (idempotent)
        assert isinstance(again, PeerStalled), "spawn after a stall"
        return took, read, run

    took, read, run = asyncio.run(asyncio.wait_for(main(), 20))
    assert isinstance(read, PeerStalled) and "no progress for 1 s" in str(read)
    assert isinstance(run, PeerStalled)
    assert LIVENESS <= took < LIVENESS + 3


def test_a_pulse_keeps_a_slow_operation_alive_and_a_silent_command_is_not_judged(
    tmp_path: Path,
) -> None:
    async def main() -> tuple[bytes, int]:
        watched = WatchedTransport(LocalTransport(tmp_path), liveness=LIVENESS)
        # A long silent command alone is not a stall (a sha256sum of a huge file).
        result = await watched.run(["sh", "-c", "sleep 1.6; echo done"])
        pulse = await watched.spawn(
            ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo t; sleep 0.3; done"],
            lambda line: None,
        )
        slow = await watched.spawn(["sh", "-c", "sleep 2; echo late"], lambda line: None)

        async def drain() -> None:
            while await pulse.read(100):
                pass

        ticking = asyncio.ensure_future(drain())
        late = await slow.read(100)  # silent for 2 s, while the pulse goes on
        await ticking
        await slow.wait()
        await pulse.wait()
        return late, result.exit_code if result.stdout == b"done\n" else -1

    late, code = asyncio.run(asyncio.wait_for(main(), 20))
    assert late == b"late\n"
    assert code == 0


@pytest.mark.docker
def test_a_command_in_a_paused_container_is_a_stall(busybox_container: str) -> None:
    """Nothing but a command waits (no poller: --no-watch): after the liveness period a
    trivial command must run; in a paused container it cannot, so the command ends in one
    PeerStalled line instead of waiting for its 600 s timeout."""

    async def main() -> tuple[float, BaseException | None]:
        watched = WatchedTransport(DockerTransport(busybox_container), liveness=LIVENESS)
        running = asyncio.ensure_future(watched.run(["sleep", "60"], timeout=600))
        await asyncio.sleep(0.5)
        assert d.docker("pause", busybox_container).returncode == 0
        began = time.monotonic()
        try:
            await running
        except PeerStalled as exc:
            return time.monotonic() - began, exc
        return time.monotonic() - began, None

    try:
        took, error = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        d.docker("unpause", busybox_container)
    assert error is not None and "paused" in str(error), error
    assert took < LIVENESS + 4

"""AgentEndpoint.close() ends even when the ping loop's cancellation is swallowed.

Python 3.11's ``asyncio.wait_for`` returns a result that arrives at the moment it is cancelled
and drops the cancellation; the ping loop then slept and pinged on forever and close() waited
for it: podsync never exited after an initial sync (seen twice on the real cluster kit, under
load). The ping request below swallows its cancellation exactly as that wait_for does, so the
race is reproduced every time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podsync.engine import agent_endpoint
from podsync.engine.agent_endpoint import AgentEndpoint
from podsync.engine.throttle import Throttle
from podsync.errors import TransportError


class QuietChannel:
    """A channel whose command has already ended: nothing to read, writes go nowhere."""

    async def write(self, data: bytes) -> None:
        pass

    async def read(self, n: int) -> bytes:
        return b""

    async def close_stdin(self) -> None:
        pass

    async def wait(self) -> int:
        return 0

    async def kill(self) -> None:
        pass


def test_close_ends_a_ping_loop_whose_cancellation_was_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_endpoint, "PING_INTERVAL_SECONDS", 0.01)
    pinging = asyncio.Event()
    swallow = [True]

    async def request(header: dict[str, Any], body: bytes = b"", timeout: Any = None) -> Any:
        if header["t"] != "ping":
            raise TransportError("the agent is gone")
        pinging.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if not swallow[0]:
                raise
            return None  # what 3.11's wait_for does when the reply races the cancellation
        return None

    async def go() -> bool:
        throttle = Throttle(None)
        channel: Any = QuietChannel()
        endpoint = AgentEndpoint(
            channel,
            "python agent",
            compress=False,
            upload_throttle=throttle,
            download_throttle=throttle,
        )
        monkeypatch.setattr(endpoint, "_request", request)
        pinger = endpoint._pinger = asyncio.create_task(endpoint._ping_loop())
        await asyncio.wait_for(pinging.wait(), 10)
        closing = asyncio.create_task(endpoint.close())
        done, _ = await asyncio.wait({closing}, timeout=10)
        if not done:  # the old behaviour: end it, so that the test fails instead of hanging
            swallow[0] = False
            while not closing.done():
                pinger.cancel()
                await asyncio.wait({closing}, timeout=0.1)
        return bool(done)

    assert asyncio.run(go()), "close() was still waiting for the ping loop after 10 s"

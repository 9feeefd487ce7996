"""A cut, empty or failed container listing is unknown, never deletions (shell agent).

At 120k entries a scan's or a poll walk's ``find`` can die half way (killed, out of memory,
no fork) or its output can arrive cut; an empty or short listing of the root then looked
like "the container is empty" (the engine's mass-deletion guard halted). Here, on a real
busybox container: a scan whose ``find`` was killed, or whose output lacks its end marker,
raises ProtocolError (the session reconnects) instead of returning fewer entries; the poll
loop's failed walks are dropped without a hint, and the loop keeps working afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from shell_helpers import Box, wait_for

from podsync.core.excludes import Rules
from podsync.engine.shell import scripts
from podsync.engine.shell_endpoint import ShellEndpoint
from podsync.errors import ProtocolError
from podsync.transport.base import Channel, RunResult, StderrSink
from podsync.transport.docker import DockerTransport

pytestmark = pytest.mark.docker

#: The fault switch: while this file exists in the container, every ``find`` of a scan or
#: of the poll loop prints a little and is then killed (status 137), as the kernel's OOM
#: killer would do it.
SWITCH = "/tmp/podsync-cut"
_KILLED_FIND = (
    f'cutfind() {{ if [ -e {SWITCH} ]; then find "$@" | head -c 200; sh -c "kill -9 \\$\\$";'
    ' else find "$@"; fi; }\n'
)


class FaultTransport:
    """Test double (a fault switch the real container cannot throw on demand): a
    DockerTransport whose scan and poll scripts run ``find`` through ``cutfind`` (above);
    with ``cut_output``, a scan's output also loses everything from ``=DONE`` on (a cut
    transfer at a record boundary)."""

    def __init__(self, container: str) -> None:
        self._inner = DockerTransport(container)
        self.description = self._inner.description
        self.link_bytes_per_second = self._inner.link_bytes_per_second
        self.workdir = self._inner.workdir
        self.cut_output = False

    @staticmethod
    def _rewrite(argv: Sequence[str]) -> list[str]:
        argv = list(argv)
        if argv[:2] == ["sh", "-c"] and ("find" in argv[2]):
            body = argv[2].replace('find "$@";', 'cutfind "$@";').replace("find . ", "cutfind . ")
            argv[2] = _KILLED_FIND + body
        return argv

    async def run(
        self, argv: Sequence[str], stdin: bytes = b"", timeout: float = 60.0
    ) -> RunResult:
        scan = len(argv) > 2 and argv[2] == scripts.SCAN
        result = await self._inner.run(self._rewrite(argv), stdin, timeout)
        if scan and self.cut_output:
            out = result.stdout
            return RunResult(result.exit_code, out[: out.rfind(b"=DONE")], result.stderr)
        return result

    async def spawn(self, argv: Sequence[str], stderr: StderrSink) -> Channel:
        return await self._inner.spawn(self._rewrite(argv), stderr)


MAKE_300 = "mkdir -p /app/d && cd /app/d && for i in $(seq 1 300); do : > f$i; done"


def pending(ep: ShellEndpoint) -> set[str]:
    """Hinted paths not taken yet."""
    return set(ep._hints._paths)


def endpoint(box: Box) -> tuple[FaultTransport, ShellEndpoint]:
    """300 files in /app/d, the fault switch off, and an endpoint over the fault transport."""
    box.sh(f"rm -f {SWITCH}; {MAKE_300}")
    transport = FaultTransport(box.name)
    ep = ShellEndpoint(transport, "/app", Rules(), poll_interval=0.2)  # type: ignore[arg-type]
    return transport, ep


def test_a_killed_or_cut_scan_raises_instead_of_listing_fewer_entries(box: Box) -> None:
    transport, ep = endpoint(box)

    async def scenario() -> None:
        await ep.start(watch=False)
        assert len(await ep.scan()) == 301
        transport.cut_output = True
        with pytest.raises(ProtocolError, match="cut short"):
            await ep.scan()
        with pytest.raises(ProtocolError, match="cut short"):
            await ep.scan(["d"])
        transport.cut_output = False
        box.sh(f": > {SWITCH}")
        try:
            with pytest.raises(ProtocolError, match="listing failed"):
                await ep.scan()  # before: "=OK" and a few records, read as a short tree
        finally:
            box.sh(f"rm -f {SWITCH}")
        assert len(await ep.scan()) == 301

    asyncio.run(scenario())
    assert box.sh("find /app/d -type f | wc -l").strip() == b"300"


def test_failed_poll_walks_are_dropped_not_hinted_and_the_loop_goes_on(box: Box) -> None:
    _, ep = endpoint(box)

    async def scenario() -> None:
        await ep.start(watch=True)
        await ep.scan()
        poller = ep._poller
        assert poller is not None

        async def listed() -> bool:
            return poller.ticks > 0 or bool(pending(ep))

        await wait_for(listed, 20, "the poll loop's first turns")
        while bool(pending(ep)):  # what the first full listing said, if anything
            await ep.hints()
        # A change the failing walks must not report as a deletion of everything else.
        box.sh(f": > {SWITCH}; : > /app/d/new")
        cuts = poller.cuts

        async def several_cuts() -> bool:
            return poller.cuts >= cuts + 4

        await wait_for(several_cuts, 20, "failed walks (=CUT) while the switch is on")
        assert not pending(ep), f"a failed walk was read as changes: {sorted(pending(ep))[:5]}"
        assert ep._hints._failure is None
        box.sh(f"rm -f {SWITCH}")
        seen: set[str] = set()
        while "d/new" not in seen:
            seen.update(await asyncio.wait_for(ep.hints(), 20))
        assert all(p in ("d/new", "d", "") for p in seen), sorted(seen)[:10]
        assert len(await ep.scan()) == 302
        await ep.close()

    asyncio.run(scenario())

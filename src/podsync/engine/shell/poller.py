"""Remote change detection for the shell agent: a metadata-polling loop in the container.

Owns: the long-running ``sh`` loop (spawned once) and the host-side parser of its output. May
import: the standard library, ``podsync.transport.base``, ``podsync.errors``,
``engine.shell.listing``, ``engine.shell.scripts``.

The loop lists the tree with the same pruned ``find``/``stat`` as a scan (metadata only, no
file content is ever read), compares the listing with the previous one *inside the
container* and only sends it when it changed; otherwise it prints a 3-byte tick. So an idle
tree costs one ``find`` + a few batched ``stat`` execs per interval and almost no traffic.

Measured here (busybox 1.35 container, 10,000 empty files in 100 dirs, cgroup CPU time over
30 s idle; ``tests/integration/shell/test_shell_hints.py``): 6.7-8.5 % of one core with the
default 0.5 s interval, 4.1-4.4 % at 1 s (DevSpace's polling: 30-50 % on 10-15k files). A
container change reaches ``hints()`` in 0.3-0.45 s.

Stopping: ``stop()`` closes stdin (a ``cat`` watching it ends and the loop exits at its next
turn) and kills the loop through the transport (its TERM trap ends the ``sleep`` and the
``cat`` and waits for them: PID 1 of a dev container is often no init and would never reap
them), so no process, not even a zombie, is left in the container. A write to a closed
stdout ends the loop too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from podsync.engine.shell.listing import Record, parse_records
from podsync.errors import AgentError, PodsyncError, SafetyHalt
from podsync.transport.base import Channel, Transport

POLL = r"""
r=$1; iv=$2; shift 2
exec 3<&0
cat <&3 >/dev/null 3<&- &
w=$!
exec 3<&-
n=
trap 'kill $w $n 2>/dev/null; wait; exit 0' TERM INT HUP
echo =UP
prev=/
while kill -0 $w 2>/dev/null; do
  cd -- "$r" 2>/dev/null || { echo =NOROOT; kill $w; wait; exit 0; }
  cur=$(find "$@" 2>/dev/null)
  if [ "$cur" != "$prev" ]; then
    echo =BEGIN; [ -n "$cur" ] && printf '%s\n' "$cur"; echo =END; prev=$cur
  else echo =T; fi
  sleep "$iv" & n=$!; wait $n; n=
done
kill $w 2>/dev/null; wait
"""

Listing = Callable[[list[Record]], None]
Failure = Callable[[BaseException], None]


class Poller:
    """Runs the loop; calls ``on_listing`` with each changed listing and ``on_tick`` when a
    turn found the tree unchanged."""

    def __init__(
        self,
        transport: Transport,
        root: str,
        find_args: Sequence[str],
        interval: float,
        on_listing: Listing,
        on_tick: Callable[[], None],
        on_failure: Failure,
        stderr: Callable[[str], None] = lambda line: None,
    ) -> None:
        self._argv = ["sh", "-c", POLL, "sh", root, f"{interval:g}", ".", *find_args]
        self._transport = transport
        self._on_listing = on_listing
        self._on_tick = on_tick
        self._on_failure = on_failure
        self._stderr = stderr
        self._channel: Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.ticks = 0

    async def start(self) -> None:
        self._channel = await self._transport.spawn(self._argv, self._stderr)
        self._task = asyncio.create_task(self._pump(self._channel))

    async def _pump(self, channel: Channel) -> None:
        buf = bytearray()
        records: list[Record] | None = None  # inside a listing
        try:
            while True:
                data = await channel.read(1 << 18)
                if not data:
                    raise AgentError("the container's change poller stopped")
                buf += data
                records = self._consume(buf, records)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # reported to whoever waits for hints
            if not self._stopping:
                self._on_failure(exc if isinstance(exc, PodsyncError) else AgentError(str(exc)))

    def _consume(self, buf: bytearray, records: list[Record] | None) -> list[Record] | None:
        while True:
            if records is not None:
                found, pos, marker = parse_records(buf, 0, links=False, final=False)
                records += found
                del buf[:pos]
                if not marker:
                    return records
                if not buf.startswith(b"=END\n"):
                    if len(buf) < 5:
                        return records
                    raise AgentError(f"the change poller sent {bytes(buf[:40])!r}")
                del buf[:5]
                self._on_listing(records)
                records = None
            line_end = buf.find(b"\n")
            if line_end < 0:
                return None
            line = bytes(buf[:line_end])
            del buf[: line_end + 1]
            if line == b"=BEGIN":
                records = []
            elif line == b"=T":
                self.ticks += 1
                self._on_tick()
            elif line == b"=NOROOT":
                raise SafetyHalt(
                    "the container folder is gone; sync stopped so nothing is deleted locally"
                )
            elif line != b"=UP":
                raise AgentError(f"the change poller sent {line[:40]!r}")

    async def stop(self) -> None:
        """End the loop in the container and the local client; safe to call twice."""
        self._stopping = True
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(PodsyncError, OSError):
                await channel.close_stdin()
            with contextlib.suppress(PodsyncError, OSError, asyncio.TimeoutError):
                await channel.kill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

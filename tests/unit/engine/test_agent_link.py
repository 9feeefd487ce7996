"""Liveness of the engine's link to the agent, judged by progress (issue 8, defects 2-4, 7).

The far side here is a scripted test double of the agent (:class:`FakeAgent`): a real agent
cannot be made to answer pings but never a scan, or to fall silent on cue. It speaks the
real framing (``wire.frames``) over an in-memory pipe. The real agent in real containers is
exercised in tests/integration/agent/.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from podsync.core.entry import Entry
from podsync.core.excludes import Rules
from podsync.core.paths import relpath
from podsync.engine.agent_endpoint import AgentEndpoint
from podsync.engine.throttle import Throttle
from podsync.errors import AgentError, PeerStalled, PodsyncError, ProtocolError, TransportError
from podsync.wire import messages as m
from podsync.wire.frames import Decoder, Frame, encode, handshake_bytes

LIVENESS = 1.0


class FakeAgent:
    """Test double of the agent's pipe. ``behave(frame)`` returns the frames to answer with;
    ``acks`` says whether it acknowledges what it reads (the real agent's reader thread does);
    ``handshake`` whether it starts the protocol at all."""

    def __init__(
        self,
        behave: Callable[[Frame], list[bytes]],
        *,
        acks: bool = True,
        handshake: bool = True,
    ) -> None:
        self.behave = behave
        self.acks = acks
        self.rx = 0
        self.seen: list[Frame] = []
        self._decoder = Decoder("podsync")
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False
        if handshake:
            self._out.put_nowait(handshake_bytes())

    def push(self, data: bytes) -> None:
        self._out.put_nowait(data)

    async def read(self, n: int) -> bytes:
        if self.closed:
            return b""
        return await self._out.get()

    async def write(self, data: bytes) -> None:
        self.rx += len(data)
        for frame in self._decoder.feed(data):
            self.seen.append(frame)
            if self.acks:
                self.push(encode({"t": "ack", "rx": self.rx}))
            for reply in self.behave(frame):
                self.push(reply)

    async def close_stdin(self) -> None:
        return None

    async def wait(self) -> int:
        return 0

    async def kill(self) -> None:
        self.closed = True
        self.push(b"")


def hello_then(rest: Callable[[Frame], list[bytes]]) -> Callable[[Frame], list[bytes]]:
    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "hello":
            return [encode({"t": "result", "id": frame.header["id"], "fsid": "host/abc"})]
        return rest(frame)

    return behave


def endpoint(agent: FakeAgent, down: int | None = None) -> AgentEndpoint:
    return AgentEndpoint(
        agent,  # type: ignore[arg-type]
        "fake",
        compress=False,
        upload_throttle=Throttle(None),
        download_throttle=Throttle(down),
        liveness=LIVENESS,
    )


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_an_agent_that_never_handshakes_fails_within_the_liveness() -> None:
    async def go() -> float:
        ep = endpoint(FakeAgent(lambda f: [], acks=False, handshake=False))
        started = time.monotonic()
        with pytest.raises(PeerStalled, match="did not start the podsync protocol within 1 s"):
            await ep.start(Rules(), watch=False)
        await ep.close()
        return time.monotonic() - started

    assert run(go()) < LIVENESS + 2


def test_an_agent_that_acknowledges_but_never_answers_a_scan_fails() -> None:
    """Defect 4: answering pings is not progress on a request."""

    async def go() -> None:
        ep = endpoint(FakeAgent(hello_then(lambda f: [])))
        await ep.start(Rules(), watch=False)
        assert ep.fsid == "host/abc"
        with pytest.raises(PeerStalled, match="no progress on 'scan'"):
            await ep.scan()
        await ep.close()

    run(go())


def test_an_agent_that_takes_in_nothing_fails_even_when_idle() -> None:
    """A paused container while nothing is being synced: the ping goes unacknowledged."""

    agent: FakeAgent

    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "hello":
            agent.acks = False  # from now on, silence
            return [encode({"t": "result", "id": frame.header["id"]})]
        return []

    async def go() -> None:
        nonlocal agent
        agent = FakeAgent(behave)
        ep = endpoint(agent)
        await ep.start(Rules(), watch=True)
        started = time.monotonic()
        with pytest.raises(PeerStalled, match="took in nothing"):
            await ep.hints()
        # The ping goes out PING_INTERVAL_SECONDS after the last frame, then LIVENESS.
        assert time.monotonic() - started < 5 + LIVENESS + 2
        await ep.close()

    run(go())


def test_progress_frames_keep_a_long_request_alive() -> None:
    """Defect 7: a request that takes many times the liveness period is fine while the agent
    reports progress on it."""

    agent: FakeAgent
    workers: list[asyncio.Future[None]] = []

    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "digest":

            async def work() -> None:
                for _ in range(8):
                    await asyncio.sleep(LIVENESS / 2)
                    agent.push(encode({"t": "progress", "id": frame.header["id"]}))
                digests = {p: "0" * 64 for p in frame.header["paths"]}
                agent.push(encode({"t": "result", "id": frame.header["id"], "digests": digests}))

            workers.append(asyncio.ensure_future(work()))
        return []

    async def go() -> dict[Any, Any]:
        nonlocal agent
        agent = FakeAgent(hello_then(behave))
        ep = endpoint(agent)
        await ep.start(Rules(), watch=False)
        try:
            return await ep.digests([relpath("a")])
        finally:
            await ep.close()

    assert run(go()) == {"a": "0" * 64}


def test_a_slow_consumer_is_not_mistaken_for_a_stalled_agent() -> None:
    """Defect 7 (download side): the agent sent everything; a throttled consumer takes
    several liveness periods to read it. Time spent waiting for the consumer does not count."""

    data = b"x" * 64 * 1024

    def behave(frame: Frame) -> list[bytes]:
        if frame.type != "get":
            return []
        rid = frame.header["id"]
        entry = Entry("file", len(data) * 6, 1).to_wire()
        out = [encode({"t": "item", "id": rid, "path": "big", "entry": entry})]
        for i in range(6):
            out.append(encode({"t": "chunk", "id": rid, "end": i == 5}, data))
        return [*out, encode({"t": "result", "id": rid, "problems": []})]

    async def go() -> int:
        ep = endpoint(FakeAgent(hello_then(behave), acks=False), down=96 * 1024)
        await ep.start(Rules(), watch=False)
        total = 0
        async for source in ep.read([relpath("big")]):
            async for chunk in source.chunks():
                total += len(chunk)
        await ep.close()
        return total

    started = time.monotonic()
    assert run(go()) == 6 * len(data)
    assert time.monotonic() - started > 2 * LIVENESS  # it really outlasted the liveness


def test_a_chunk_beyond_the_announced_size_fails_at_once() -> None:
    """Defects 8a and 9: never buffered, never written: the first excess byte ends it."""

    def behave(frame: Frame) -> list[bytes]:
        if frame.type != "get":
            return []
        rid = frame.header["id"]
        item = encode({"t": "item", "id": rid, "path": "a", "entry": ["f", 5, 1, 0, None]})
        return [item] + [encode({"t": "chunk", "id": rid}, b"y" * 1024)] * 50

    async def go() -> None:
        ep = endpoint(FakeAgent(hello_then(behave)))
        await ep.start(Rules(), watch=False)
        with pytest.raises(ProtocolError, match="more than the 5 bytes of the content of a"):
            async for source in ep.read([relpath("a")]):
                async for _ in source.chunks():
                    pass
        await ep.close()

    run(go())


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"not zlib at all", "not valid zlib data"), (None, "inflates to more than")],
    ids=["bad-zlib", "bomb"],
)
def test_bad_or_exploding_compressed_chunks_are_one_line_errors(
    body: bytes | None, message: str
) -> None:
    """Defects 8b and 10."""
    import zlib

    bomb = zlib.compress(b"\0" * (64 << 20), 9)

    def behave(frame: Frame) -> list[bytes]:
        if frame.type != "get":
            return []
        rid = frame.header["id"]
        item = encode({"t": "item", "id": rid, "path": "a", "entry": ["f", 1000, 1, 0, None]})
        return [item, encode({"t": "chunk", "id": rid, "z": True, "end": True}, body or bomb)]

    async def go() -> None:
        ep = endpoint(FakeAgent(hello_then(behave)))
        await ep.start(Rules(), watch=False)
        with pytest.raises(ProtocolError, match=message):
            async for source in ep.read([relpath("a")]):
                async for _ in source.chunks():
                    pass
        await ep.close()

    run(go())


def test_a_failure_reaches_a_consumer_whose_queue_is_full() -> None:
    """Defect 3: the download queue is full when the agent dies; the consumer still learns
    it at once (a flag every waiter checks, not a queue item that may not fit)."""

    agent: FakeAgent

    def behave(frame: Frame) -> list[bytes]:
        if frame.type != "get":
            return []
        rid = frame.header["id"]
        item = encode({"t": "item", "id": rid, "path": "a", "entry": ["f", 1 << 30, 1, 0, None]})
        return [item] + [encode({"t": "chunk", "id": rid}, b"z" * 60_000)] * 100

    async def go() -> None:
        nonlocal agent
        agent = FakeAgent(hello_then(behave))
        ep = endpoint(agent)
        await ep.start(Rules(), watch=False)
        with pytest.raises(TransportError, match=r"container stopped \(killed\?\) while sending a"):
            async for source in ep.read([relpath("a")]):
                n = 0
                async for _ in source.chunks():
                    n += 1
                    if n == 1:
                        await asyncio.sleep(0.2)  # let the reader fill the queue
                        agent.push(b"")  # then the far side goes away
                        await asyncio.sleep(0.2)
        await ep.close()

    run(go())


def test_error_answers_are_agent_errors_and_the_link_goes_on() -> None:
    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "digest":
            return [encode({"t": "error", "id": frame.header["id"], "message": "bad\nthing"})]
        return []

    async def go() -> None:
        ep = endpoint(FakeAgent(hello_then(behave)))
        await ep.start(Rules(), watch=False)
        with pytest.raises(AgentError, match="agent: bad thing"):
            await ep.digests([relpath("a")])
        with pytest.raises(AgentError):
            await ep.digests([relpath("b")])
        await ep.close()

    run(go())


class GatedAgent(FakeAgent):
    """A FakeAgent whose pipe blocks on the first large write until ``gate`` is set (a
    stalled data send)."""

    def __init__(self, behave: Callable[[Frame], list[bytes]]) -> None:
        super().__init__(behave)
        self.gate = asyncio.Event()

    async def write(self, data: bytes) -> None:
        if len(data) > 100_000 and not self.gate.is_set():
            await self.gate.wait()
        await super().write(data)


def test_control_frames_go_before_queued_data_never_mid_frame() -> None:
    """ping/cancel/bye never wait behind data queued for a stalled pipe (only behind the
    frame being written)."""

    async def go() -> list[tuple[str, Any]]:
        agent = GatedAgent(hello_then(lambda f: []))
        ep = endpoint(agent)
        await ep.start(Rules(), watch=False)
        link = ep._link
        for i in range(2):
            await link.send({"t": "chunk", "n": i}, b"d" * 200_000, flush=True)
        await asyncio.sleep(0.05)  # chunk 0 is being written (stalled), chunk 1 queued
        link.control({"t": "ping"})
        agent.gate.set()
        await asyncio.sleep(0.1)
        # (numbered pings are the clock pings start() sends: engine.latency)
        clock = [f for f in agent.seen if f.type == "ping" and "n" in f.header]
        seen = [
            (f.type, f.header.get("n")) for f in agent.seen if f.type != "hello" and f not in clock
        ]
        await ep.close()
        return seen

    assert run(go())[:3] == [("chunk", 0), ("ping", None), ("chunk", 1)]


def test_results_for_paths_never_sent_are_refused() -> None:
    """A hostile agent cannot grow a put's results beyond the put."""

    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "end":
            written = [[f"p{i}", None] for i in range(10)]
            return [encode({"t": "result", "id": frame.header["id"], "written": written})]
        return []

    async def nothing() -> Any:
        for item in ():
            yield item

    async def go() -> None:
        ep = endpoint(FakeAgent(hello_then(behave)))
        await ep.start(Rules(), watch=False)
        with pytest.raises(ProtocolError, match="never sent"):
            await ep.write(nothing())
        await ep.close()

    run(go())


def test_warnings_are_said_once_and_printable() -> None:
    said: list[str] = []

    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "hello":
            warn = encode({"t": "warn", "lines": ["x\udcff: skipped", "x\udcff: skipped"]})
            return [warn, warn, encode({"t": "result", "id": frame.header["id"]})]
        return []

    async def go() -> None:
        ep = AgentEndpoint(
            FakeAgent(behave),  # type: ignore[arg-type]
            "fake",
            compress=False,
            upload_throttle=Throttle(None),
            download_throttle=Throttle(None),
            warn=said.append,
            liveness=LIVENESS,
        )
        await ep.start(Rules(), watch=False)
        await ep.close()

    run(go())
    assert said == ["x\\xff: skipped"]


def test_unexpected_messages_are_protocol_errors() -> None:
    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "scan":
            return [encode({"t": "result", "id": 99})]
        return []

    async def go() -> None:
        ep = endpoint(FakeAgent(hello_then(behave)))
        await ep.start(Rules(), watch=False)
        with pytest.raises(PodsyncError, match="request 99, not open"):
            await ep.scan()
        await ep.close()

    run(go())


def test_listings_arrive_in_pieces() -> None:
    tree = {relpath(f"f{i}"): Entry("file", i, i) for i in range(10_000)}

    def behave(frame: Frame) -> list[bytes]:
        if frame.type != "scan":
            return []
        rid = frame.header["id"]
        out = []
        for piece in m.listing_pieces(tree):
            body, z = m.encode_listing(piece)
            out.append(encode({"t": "list", "id": rid, "z": z}, body))
        return [*out, encode({"t": "result", "id": rid})]

    async def go() -> int:
        ep = endpoint(FakeAgent(hello_then(behave)))
        await ep.start(Rules(), watch=False)
        got = await ep.scan()
        await ep.close()
        return len(got)

    assert run(go()) == 10_000


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM (the peak RSS)
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("mode", ["endless-chunks", "chunk-bomb", "listing-bomb"])
def test_hostile_streams_keep_memory_bounded(mode: str) -> None:
    """Defect 8: an endless stream, a 1000x chunk bomb, a listing bomb: the peak RSS of this
    process grows by a few MB at most (it used to pass 2-3 GB)."""
    import zlib

    if not _peak_rss_reset():
        pytest.skip("/proc/self/clear_refs is not available")
    bomb = zlib.compress(b"\0" * (256 << 20), 9)  # 256 MiB inflated, ~250 KB on the wire
    listing_bomb = zlib.compress(b" " * (256 << 20), 9)

    agent: FakeAgent

    def behave(frame: Frame) -> list[bytes]:
        rid = frame.header.get("id")
        if frame.type == "scan":
            return [encode({"t": "list", "id": rid, "z": True}, listing_bomb)]
        if frame.type != "get":
            return []
        item = encode({"t": "item", "id": rid, "path": "a", "entry": ["f", 5, 1, 0, None]})
        if mode == "chunk-bomb":
            return [item, encode({"t": "chunk", "id": rid, "z": True, "end": True}, bomb)]

        async def endless() -> None:
            block = encode({"t": "chunk", "id": rid}, b"e" * (1 << 20))
            for _ in range(2000):
                agent.push(block)
                await asyncio.sleep(0)

        workers.append(asyncio.ensure_future(endless()))
        return [item]

    workers: list[asyncio.Future[None]] = []

    async def go() -> None:
        nonlocal agent
        agent = FakeAgent(hello_then(behave))
        ep = endpoint(agent)
        await ep.start(Rules(), watch=False)
        with pytest.raises(ProtocolError):
            if mode == "listing-bomb":
                await ep.scan()
            else:
                async for source in ep.read([relpath("a")]):
                    async for _ in source.chunks():
                        pass
        await ep.close()
        for worker in workers:
            worker.cancel()

    _peak_rss_reset()
    before = _peak_rss()
    run(go())
    grown = _peak_rss() - before
    print(f"{mode}: peak RSS grew by {grown / (1 << 20):.1f} MiB")
    assert grown < 64 << 20


def test_an_absurd_mtime_is_refused_at_the_edge() -> None:
    """Defect 11: 10**30 ns can never reach os.utime (it raised OverflowError there)."""
    with pytest.raises(ProtocolError):
        Entry.from_wire(["f", 1, 10**30, 0, None])
    assert Entry.from_wire(["f", 1, 2**63 - 1, 0, None]).mtime_ns == 2**63 - 1

"""Fuzzing the wire edge (issue 8): whatever bytes or messages the other side sends, the
decoder, the validators, the engine's routing and the agent's dispatch fail only with
podsync's own errors (PodsyncError subclasses), never with another exception type, and the
agent never dies of a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podsync.agent.link import Stopped
from podsync.agent.server import Server
from podsync.core.entry import Entry
from podsync.core.excludes import Rules
from podsync.engine.agent_endpoint import AgentEndpoint
from podsync.engine.throttle import Throttle
from podsync.errors import PodsyncError
from podsync.wire import messages as m
from podsync.wire.frames import Decoder, Frame, encode, handshake_bytes

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["f", "d", "l", "any", "", "..", "/abs", "a\x00b", "\ud800", "\udcff"]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=25,
)
entries = st.lists(json_values, min_size=5, max_size=5) | json_values
FIELDS = [
    "id",
    "paths",
    "path",
    "entry",
    "expect",
    "z",
    "end",
    "changed",
    "listing",
    "w",
    "rx",
    "lines",
    "written",
    "problems",
    "digests",
    "items",
    "under",
    "chunk",
    "compress",
    "rules",
    "watch",
    "message",
    "fsid",
    "granularity",
    "python",
    "root",
    "abort",
]
KINDS = [
    "hello",
    "scan",
    "digest",
    "get",
    "put",
    "item",
    "chunk",
    "end",
    "delete",
    "ping",
    "cancel",
    "bye",
    "result",
    "error",
    "list",
    "done",
    "progress",
    "ack",
    "hints",
    "warn",
    "bogus",
]


@st.composite
def headers(draw: st.DrawFn) -> dict[str, Any]:
    header: dict[str, Any] = {"t": draw(st.sampled_from(KINDS))}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        header[name] = draw(entries if name in ("entry", "expect") else json_values)
    if draw(st.booleans()):
        header["id"] = draw(st.integers(min_value=0, max_value=4))
    return header


bodies = st.binary(max_size=300) | st.builds(
    lambda raw: zlib.compress(raw), st.binary(max_size=300)
)


def only_podsync_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(PodsyncError):
        call()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.booleans(), st.integers(1, 64))
def test_arbitrary_bytes_into_the_decoder(data: bytes, handshake: bool, step: int) -> None:
    decoder = Decoder("the agent")
    stream = (handshake_bytes() if handshake else b"") + data

    def feed() -> None:
        for at in range(0, len(stream), step):
            for frame in decoder.feed(stream[at : at + step]):
                assert isinstance(frame.header, dict) and isinstance(frame.type, str)

    only_podsync_errors(feed)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_arbitrary_json_as_a_listing(value: Any, compressed: bool) -> None:
    raw = json.dumps(value).encode()
    body = zlib.compress(raw) if compressed else raw
    only_podsync_errors(lambda: m.decode_listing(body, compressed))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500), st.booleans())
def test_arbitrary_bytes_as_a_listing(body: bytes, compressed: bool) -> None:
    only_podsync_errors(lambda: m.decode_listing(body, compressed))


@settings(max_examples=300, deadline=None)
@given(headers())
def test_every_field_validator_on_wrong_values(header: dict[str, Any]) -> None:
    checks: list[Callable[[], object]] = [
        lambda: Entry.from_wire(header.get("entry")),
        lambda: m.expect_from_wire(header.get("expect")),
        lambda: m.paths_from_wire(header.get("paths")),
        lambda: m.path_from_wire(header.get("path")),
        lambda: m.problems_from_wire(header.get("problems")),
        lambda: m.written_from_wire(header.get("written")),
        lambda: m.texts_from_wire(header.get("lines")),
        lambda: m.text_field(header, "message"),
        lambda: m.int_field(header, "id", 1),
        lambda: m.flag(header, "z"),
        lambda: Rules.from_wire(header.get("rules")),
    ]
    for check in checks:
        only_podsync_errors(check)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 2000))
def test_arbitrary_compressed_chunks(data: bytes, limit: int) -> None:
    only_podsync_errors(lambda: m.inflate(data, limit, "a chunk"))
    only_podsync_errors(lambda: m.inflate(zlib.compress(data), limit, "a chunk"))


# -- the engine's routing of what the agent sends ---------------------------------------------
class ScriptedChannel:
    """A test double of the agent's pipe (no real agent can be made to send arbitrary
    frames): it answers with the handshake and then ``script``, then ends."""

    def __init__(self, script: bytes) -> None:
        self._out = [handshake_bytes() + script]

    async def read(self, n: int) -> bytes:
        return self._out.pop() if self._out else b""

    async def write(self, data: bytes) -> None:
        return None

    async def close_stdin(self) -> None:
        return None

    async def wait(self) -> int:
        return 0

    async def kill(self) -> None:
        return None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(headers(), bodies), max_size=5), st.sampled_from(["scan", "get", "put"]))
def test_arbitrary_messages_into_the_engine(
    frames: list[tuple[dict[str, Any], bytes]], op: str
) -> None:
    script = b"".join(encode(h, b) for h, b in frames)

    async def go() -> None:
        endpoint = AgentEndpoint(
            ScriptedChannel(script),  # type: ignore[arg-type]
            "fuzz",
            compress=True,
            upload_throttle=Throttle(None),
            download_throttle=Throttle(None),
            liveness=1.0,
        )
        try:
            await endpoint.start(Rules(), watch=True)
            if op == "scan":
                await endpoint.scan()
            elif op == "get":
                async for source in endpoint.read([m.path_from_wire("a"), m.path_from_wire("b")]):
                    async for _ in source.chunks():
                        pass
            else:

                async def nothing() -> Any:
                    for _ in ():
                        yield _

                await endpoint.write(nothing())
        except PodsyncError:
            pass
        finally:
            await endpoint.close()

    asyncio.run(asyncio.wait_for(go(), 30))


# -- the agent's dispatch of what podsync sends ------------------------------------------------
@pytest.fixture(scope="module")
def agent_root() -> Any:
    with tempfile.TemporaryDirectory() as root:
        os.mkdir(os.path.join(root, "d"))
        with open(os.path.join(root, "d", "f"), "wb") as handle:
            handle.write(b"content")
        yield root


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(headers(), bodies), min_size=1, max_size=6))
def test_arbitrary_requests_never_end_the_agent(
    agent_root: str, frames: list[tuple[dict[str, Any], bytes]]
) -> None:
    """Each request is answered (a result or an error) and the agent goes on serving; stray
    frames of a put are consumed by it. Only Stopped (end of the queued input) may leave."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    server = Server(agent_root, infd=-1, outfd=write_fd, fsid_dir=os.path.join(agent_root, ".ids"))
    hello = Frame({"t": "hello", "id": 1, "rules": Rules().to_wire()}, b"")
    server.dispatch(hello)
    try:
        queued = [Frame(h, b) for h, b in frames]
        first, rest = queued[0], queued[1:]
        server.link._inbox.put_nowait(rest)
        server.link._inbox.put_nowait(None)  # then the input ends
        try:
            server.dispatch(first)
            while True:
                server.dispatch(server.link.next_frame())
        except Stopped:
            pass
    finally:
        server.link.stopping.set()
        os.close(read_fd)
        os.close(write_fd)

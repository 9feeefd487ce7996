"""The time fields of the wire protocol (issue 10, part 4): numbered pings answered with the
agent's clock, hints stamped with the agent's event time, both optional, both validated.

The engine side talks to the scripted agent double of ``test_agent_link`` (a real agent
cannot be made to lie about its clock or to skip a field); the agent side's answer is its
real ``Link._pong``. The real agent end to end: tests/e2e/test_latency.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from tests.unit.engine.test_agent_link import FakeAgent, endpoint, hello_then, run

from podsync.agent.link import Link
from podsync.core.excludes import Rules
from podsync.engine.latency import CLOCK_ROUNDS
from podsync.errors import ProtocolError
from podsync.wire import messages as m
from podsync.wire.frames import Frame, encode

# -- the field ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1_780_000_000.25, 1_780_000_000.25, id="a float"),
        pytest.param(1_780_000_000, 1_780_000_000.0, id="an int"),
        pytest.param(0, 0.0, id="the epoch"),
        pytest.param(m.TIME_MAX, m.TIME_MAX, id="the largest"),
    ],
)
def test_time_field_accepts_times(value: Any, expected: float) -> None:
    assert m.time_field({"t": "ack", "at": value}, "at") == expected


def test_time_field_is_optional() -> None:
    assert m.time_field({"t": "hints"}, "at") is None
    assert m.time_field({"t": "hints", "at": None}, "at") is None


@pytest.mark.parametrize(
    "value",
    [True, "1780000000", -1, -0.5, math.nan, math.inf, -math.inf, m.TIME_MAX * 2, [1.0], {}],
    ids=repr,
)
def test_time_field_rejects_what_is_not_a_time(value: Any) -> None:
    with pytest.raises(ProtocolError, match="malformed time 'at'"):
        m.time_field({"t": "hints", "at": value}, "at")


# -- the agent's answer -------------------------------------------------------------------------


def test_the_agent_answers_a_numbered_ping_with_its_clock() -> None:
    link = Link(0, 1)
    link.rx = 123
    before = time.time()
    answer = link._pong({"t": "ping", "n": 7})
    assert answer["t"] == "ack" and answer["rx"] == 123 and answer["n"] == 7
    assert before <= answer["at"] <= time.time()


@pytest.mark.parametrize("number", [None, True, "7", 0, -3, 1 << 60, 1.5])
def test_the_agent_answers_other_pings_as_before(number: Any) -> None:
    link = Link(0, 1)
    header = {"t": "ping"} if number is None else {"t": "ping", "n": number}
    assert link._pong(header) == {"t": "ack", "rx": 0}


# -- the engine's clock -------------------------------------------------------------------------


def clock_agent(skew: float, at: Any = None, echo: bool = True) -> FakeAgent:
    """Answers numbered pings like the real agent, with a clock ``skew`` seconds ahead (or
    with ``at`` as given); ``echo=False``: an older agent (a plain ack, no number)."""

    def behave(frame: Frame) -> list[bytes]:
        if frame.type == "ping" and echo and "n" in frame.header:
            stamp = time.time() + skew if at is None else at
            return [encode({"t": "ack", "rx": 0, "n": frame.header["n"], "at": stamp})]
        return []

    return FakeAgent(hello_then(behave))


def test_the_engine_learns_the_agent_clock_right_after_hello() -> None:
    async def go() -> tuple[Any, ...]:
        ep = endpoint(clock_agent(skew=3.0))
        await ep.start(Rules(), watch=True)
        deadline = time.monotonic() + 10
        while ep.clock.samples < CLOCK_ROUNDS and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        result = (ep.clock.samples, ep.clock.offset, ep.clock.rtt)
        await ep.close()
        return result

    samples, offset, rtt = run(go())
    assert samples == CLOCK_ROUNDS  # one after the other, then only the idle pings
    assert offset == pytest.approx(3.0, abs=rtt / 2 + 0.001)


def test_an_agent_without_a_clock_is_fine() -> None:
    async def go() -> tuple[bool, Any]:
        agent = clock_agent(skew=0, echo=False)
        ep = endpoint(agent)
        await ep.start(Rules(), watch=True)
        # The ping went out and its (plain) ack came back: every byte sent is acknowledged.
        link = ep._link
        deadline = time.monotonic() + 10
        while (
            not (any(f.type == "ping" for f in agent.seen) and link._acked >= link._tx > 0)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.005)
        result = (ep.clock.known, link.failure)
        await ep.close()
        return result

    assert run(go()) == (False, None)


def test_a_malformed_clock_breaks_the_link() -> None:
    async def go() -> Any:
        ep = endpoint(clock_agent(skew=0, at="noon"))
        await ep.start(Rules(), watch=True)
        with pytest.raises(ProtocolError, match="malformed time"):
            await ep.hints()
        await ep.close()

    run(go())


def test_an_answer_to_a_ping_never_sent_is_ignored() -> None:
    async def go() -> tuple[bool, Any]:
        agent = clock_agent(skew=0, echo=False)
        ep = endpoint(agent)
        await ep.start(Rules(), watch=True)
        agent.push(encode({"t": "ack", "rx": 0, "n": 999, "at": 5.0}))
        agent.push(hints(["after"]))  # frames are handled in order: this one comes later
        assert await ep.hints() == ["after"]
        result = (ep.clock.known, ep._link.failure)
        await ep.close()
        return result

    assert run(go()) == (False, None)


# -- stamped hints ------------------------------------------------------------------------------


def hints(paths: list[str], at: Any = None) -> bytes:
    header: dict[str, Any] = {"t": "hints", "paths": paths}
    if at is not None:
        header["at"] = at
    return encode(header)


def test_a_stamped_hint_counts_from_the_agent_event_on_our_clock() -> None:
    async def go() -> tuple[Any, ...]:
        agent = clock_agent(skew=3.0)
        ep = endpoint(agent)
        await ep.start(Rules(), watch=True)
        while ep.clock.samples < CLOCK_ROUNDS:
            await asyncio.sleep(0.005)
        event = time.time() - 0.200  # the agent saw it 200 ms ago (its clock: +3 s)
        agent.push(hints(["src/a.py"], event + 3.0))
        taken = await ep.hints()
        result = (taken, ep.event_times.when("src/a.py"), event, ep.hint_stamps, ep.clock.rtt)
        await ep.close()
        return result

    taken, when, event, stamped, rtt = run(go())
    assert taken == ["src/a.py"] and stamped
    assert when == pytest.approx(event, abs=rtt / 2 + 0.002)


def test_an_unstamped_hint_counts_from_its_arrival() -> None:
    async def go() -> tuple[Any, ...]:
        agent = clock_agent(skew=0, echo=False)
        ep = endpoint(agent)
        await ep.start(Rules(), watch=True)
        before = time.time()
        agent.push(hints(["b"]))
        await ep.hints()
        result = (before, ep.event_times.when("b"), time.time(), ep.hint_stamps)
        await ep.close()
        return result

    before, when, after, stamped = run(go())
    assert before <= when <= after and not stamped


def test_a_stamp_later_than_the_arrival_is_the_arrival() -> None:
    """A clock that jumped (or a wrong offset) never makes an event later than its hint."""

    async def go() -> tuple[Any, ...]:
        agent = clock_agent(skew=0)
        ep = endpoint(agent)
        await ep.start(Rules(), watch=True)
        while ep.clock.samples < CLOCK_ROUNDS:
            await asyncio.sleep(0.005)
        agent.push(hints(["c"], time.time() + 60))
        await ep.hints()
        result = (ep.event_times.when("c"), time.time())
        await ep.close()
        return result

    when, now = run(go())
    assert when is not None and when <= now


def test_a_malformed_stamp_breaks_the_link() -> None:
    async def go() -> None:
        agent = clock_agent(skew=0, echo=False)
        ep = endpoint(agent)
        await ep.start(Rules(), watch=True)
        agent.push(hints(["d"], -5))
        with pytest.raises(ProtocolError, match="malformed time"):
            await ep.hints()
        await ep.close()

    run(go())

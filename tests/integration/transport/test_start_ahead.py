"""Commands started ahead (``transport.process.start_ahead``, used by ``engine.prestart`` so
the agent's ``docker exec`` runs while the engine loads), against a real container: the first
spawn of the same command takes the running process, one nobody takes is killed with its
loop, and a start on another loop never takes it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest
from tests.support import docker as d
from tests.support.wait import wait_until

from podsync.transport import process
from podsync.transport.docker import DockerTransport

pytestmark = pytest.mark.docker


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    process.discard_ahead()
    running.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie of ours counts as gone once reaped
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def test_the_first_spawn_of_the_same_command_takes_the_process_started_ahead(
    py_container: str, loop: asyncio.AbstractEventLoop
) -> None:
    transport = DockerTransport(py_container)
    process.start_ahead(loop, transport.wrapped_argv(["cat"]))
    (ahead,) = (proc for _, proc in process._AHEAD.values())

    async def scenario() -> bytes:
        channel = await transport.spawn(["cat"], lambda line: None)
        try:
            assert channel.pid == ahead.pid  # taken, not started again
            assert not process._AHEAD
            await channel.write(b"through the pipe\n")
            return await channel.read_line()
        finally:
            await channel.kill()

    assert loop.run_until_complete(scenario()) == b"through the pipe\n"
    # Another command, or the same one again, starts as usual.
    again = loop.run_until_complete(transport.run(["echo", "ok"]))
    assert again.stdout == b"ok\n"


def test_one_nobody_takes_is_killed_here_and_ends_in_the_container(
    py_container: str, loop: asyncio.AbstractEventLoop
) -> None:
    """The far side ends at the end of its input, as the agent does (a command that never
    reads its input would be left to the container)."""
    transport = DockerTransport(py_container)
    process.start_ahead(loop, transport.wrapped_argv(["sh", "-c", "cat; : ahead-1007"]))
    (ahead,) = (proc for _, proc in process._AHEAD.values())
    wait_until(
        lambda: b"ahead-1007" in d.docker("exec", py_container, "ps", "-eo", "args").stdout,
        20,
        message="the command started ahead never ran in the container",
    )
    process.discard_ahead()
    wait_until(lambda: gone(ahead.pid), 10, message="the local client is still running")
    wait_until(
        lambda: b"ahead-1007" not in d.docker("exec", py_container, "ps", "-eo", "args").stdout,
        20,
        message="the command is still running in the container",
    )


def test_the_same_command_twice_is_started_once_and_reaped_quietly(
    py_container: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two syncs of one container folder give the same command: one process. Killed
    untaken, it is reaped before its loop closes (asyncio would warn about a child whose
    loop is closed)."""
    own = asyncio.new_event_loop()
    argv = DockerTransport(py_container).wrapped_argv(["cat"])
    process.start_ahead(own, argv)
    process.start_ahead(own, argv)
    (ahead,) = (proc for _, proc in process._AHEAD.values())
    process.discard_ahead()
    own.close()
    assert ahead.returncode is not None
    assert "is closed" not in caplog.text


def test_a_start_on_another_loop_does_not_take_it(
    py_container: str, loop: asyncio.AbstractEventLoop
) -> None:
    transport = DockerTransport(py_container)
    argv = transport.wrapped_argv(["cat"])
    process.start_ahead(loop, argv)
    (ahead,) = (proc for _, proc in process._AHEAD.values())

    async def elsewhere() -> int:
        channel = await transport.spawn(["cat"], lambda line: None)
        try:
            return channel.pid
        finally:
            await channel.kill()

    started = time.monotonic()
    assert asyncio.run(elsewhere()) != ahead.pid
    assert time.monotonic() - started < 25
    assert len(process._AHEAD) == 1  # still there for its own loop, killed with it

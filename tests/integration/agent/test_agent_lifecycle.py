"""The agent's start and end leave no partial file (issue 8, "Shutdown"): stale temp files are
removed when it starts; ``bye`` or end of input in the middle of a transfer aborts the temp
file; a put the engine abandons is ended cleanly and the connection goes on.

The real agent as a local subprocess (the bundle, exactly as for ``--local-target``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.agent.agent_helpers import MIB, Loop, endless_file, one_file, start_agent
from tests.integration.engine.engine_helpers import agent_pids
from tests.support.wait import wait_until

from podsync.core.entry import FILE, Entry
from podsync.core.paths import RelPath
from podsync.engine.endpoint import FileItem
from podsync.transport.local import LocalTransport


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture
def far(tmp_path: Path) -> Path:
    root = tmp_path / "far"
    root.mkdir()
    return root


def temps(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".podsync-*")]


def test_stale_temp_files_are_removed_when_the_agent_starts(far: Path, loop: Loop) -> None:
    (far / "sub").mkdir()
    (far / "sub" / ".podsync-tmp-123-abcdef").write_bytes(b"half a file")
    (far / ".podsync-tmp-9-xyz").write_bytes(b"another")
    session = loop.run(start_agent(LocalTransport(far), str(far)))
    try:
        assert temps(far) == []
    finally:
        loop.run(session.endpoint.close(), 10)


@pytest.mark.parametrize("how", ["bye", "end-of-input"])
def test_ending_mid_upload_leaves_no_temp_file_and_no_agent(
    far: Path, loop: Loop, how: str
) -> None:
    session = loop.run(start_agent(LocalTransport(far), str(far), upload=8 * MIB))
    started = asyncio.Event()
    upload = loop.start(session.endpoint.write(endless_file("big.bin", 400 * MIB, started)))
    wait_until(lambda: started.is_set() and temps(far), 30, message="upload never began")
    if how == "bye":
        loop.run(session.endpoint.close(), 10)
    else:
        loop.run(session.endpoint._link.channel.close_stdin(), 10)
    wait_until(lambda: not agent_pids(far), 10, message="the agent did not exit")
    assert temps(far) == []
    assert not (far / "big.bin").exists()
    with pytest.raises(Exception):  # noqa: B017 - whatever the upload says, it did not finish
        upload.result(10)
    if how != "bye":
        loop.run(session.endpoint.close(), 10)


def test_a_put_the_engine_abandons_ends_cleanly(far: Path, loop: Loop) -> None:
    """The producer of a put fails in the middle of a file: the agent drops the half file,
    and the connection goes on serving."""

    class SourceBroke(Exception):
        pass

    async def broken() -> AsyncIterator[FileItem]:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a" * MIB
            raise SourceBroke()

        yield FileItem(RelPath("half.bin"), Entry(FILE, 4 * MIB, 1), None, chunks())

    session = loop.run(start_agent(LocalTransport(far), str(far)))
    try:
        with pytest.raises(SourceBroke):
            loop.run(session.endpoint.write(broken()))
        result = loop.run(session.endpoint.write(one_file("whole.txt", b"fine")))
        assert RelPath("whole.txt") in result.written
        wait_until(lambda: temps(far) == [], 10, message="half file left")
        assert not (far / "half.bin").exists()
    finally:
        loop.run(session.endpoint.close(), 10)


def test_put_results_come_back_in_bounded_pieces(far: Path, loop: Loop) -> None:
    """5000 files in one put: the results arrive as ``done`` pieces of at most a batch."""
    pieces: list[int] = []

    async def many() -> AsyncIterator[FileItem]:
        for i in range(5000):
            yield await anext(one_file(f"d/f{i:04d}", b"x"))

    session = loop.run(start_agent(LocalTransport(far), str(far)))
    link: Any = session.endpoint._link
    original = link._route

    async def spy(frame: Any) -> None:
        if frame.type in ("done", "result") and "written" in frame.header:
            pieces.append(len(frame.header["written"]))
        await original(frame)

    link._route = spy
    try:
        result = loop.run(session.endpoint.write(many()), 120)
        assert len(result.written) == 5000
        assert sum(pieces) == 5000
        assert max(pieces) <= 1000
    finally:
        loop.run(session.endpoint.close(), 10)

"""A bulk put through the real agent (the initial sync's shape): many small files that the
agent commits on its writer threads, mixed with large streamed files, directories and
per-path trouble. Runs the real agent as a local process (LocalTransport)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.integration.agent.agent_helpers import MIB, Loop, start_agent

from podsync.core.entry import DIR, FILE, Entry
from podsync.core.paths import RelPath
from podsync.engine.endpoint import FileItem
from podsync.limits import BATCH_PATHS
from podsync.transport.local import LocalTransport

MTIME = 1_700_000_000_123_456_789


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def content(i: int) -> bytes:
    return (f"file {i} ".encode() * (1 + i % 300))[: 1 + (i * 37) % 20000]


async def bulk(files: int, big: dict[str, int], clash: str) -> AsyncIterator[FileItem]:
    """Directories first, then ``files`` small files (one expecting an absent path that
    exists: ``clash``), with large files in between."""
    for d in range(7):
        yield FileItem(RelPath(f"d{d}"), Entry(DIR, 0, 0), None, None)
    for i in range(files):
        path = f"d{i % 7}/f{i}.txt"
        if i == files // 2:
            for name, size in big.items():
                yield FileItem(RelPath(name), Entry(FILE, size, MTIME), None, blocks(size))
        data = content(i)
        yield FileItem(RelPath(path), Entry(FILE, len(data), MTIME), None, once(data))
    data = b"replacement"
    yield FileItem(RelPath(clash), Entry(FILE, len(data), MTIME), None, once(data))


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def blocks(size: int) -> AsyncIterator[bytes]:
    for at in range(0, size, MIB):
        yield bytes([at // MIB % 251]) * min(MIB, size - at)


def test_a_bulk_put_commits_every_file_exactly_and_reports_it(tmp_path: Path, loop: Loop) -> None:
    far = tmp_path / "far"
    (far / "d3").mkdir(parents=True)
    clash = "d3/already-there.txt"
    (far / clash).write_bytes(b"the container's own")
    files = 2 * BATCH_PATHS + 345  # more results than one piece may carry
    big = {"d1/big.bin": 3 * MIB + 5, "d2/exactly-one-chunk.bin": MIB}
    session = loop.run(start_agent(LocalTransport(far), str(far)))
    try:
        result = loop.run(session.endpoint.write(bulk(files, big, clash)), 300)
    finally:
        loop.run(session.endpoint.close(), 10)

    for i in range(files):
        path = far / f"d{i % 7}/f{i}.txt"
        assert path.read_bytes() == content(i), path
        assert path.stat().st_mtime_ns == MTIME
        entry = result.written[RelPath(f"d{i % 7}/f{i}.txt")]
        assert entry is not None and entry.size == len(content(i))
    for name, size in big.items():
        data = (far / name).read_bytes()
        assert len(data) == size and data[-1] == (size - 1) // MIB % 251
        assert RelPath(name) in result.written
    # The expectation (absent) failed for one path among thousands: that path alone is a
    # problem, and the container's file is untouched.
    assert [p.path for p in result.problems] == [RelPath(clash)]
    assert (far / clash).read_bytes() == b"the container's own"
    assert len(result.written) == files + len(big) + 7
    leftovers = [n for _, _, names in os.walk(far) for n in names if n.startswith(".podsync")]
    assert leftovers == []

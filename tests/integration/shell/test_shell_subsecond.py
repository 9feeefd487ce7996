"""The shell agent sees mtimes to the nanosecond, against a real busybox container.

busybox ``stat -c %Y`` has whole seconds only, so before, a container-side rewrite keeping the
size within the same second looked unchanged: never hinted, never downloaded, and an upload
expecting the old version overwrote the new one (the k8s onUpload CI failure: a command's
``count.out`` went from "2\\n" to "3\\n" within one second and never came back).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from shell_helpers import Box, file_item, items_of, run

from podsync.core.entry import FILE, Entry
from podsync.core.paths import RelPath
from podsync.engine.endpoint import DeleteItem
from podsync.engine.shell_endpoint import ShellEndpoint

pytestmark = pytest.mark.docker

F = RelPath("f")

#: Two reference files whose mtimes share one second but not its fraction (busybox ``touch``
#: takes no fraction; ``touch -r`` copies one whole).
REFERENCES = r"""
cd /tmp && n=0
while [ $n -lt 50 ]; do
  : > r1; usleep 30000; : > r2; n=$((n + 1))
  [ "$(stat -c %Y r1)" = "$(stat -c %Y r2)" ] && [ "$(stat -c %y r1)" != "$(stat -c %y r2)" ] \
    && exit 0
done
exit 1
"""


def first_version(box: Box) -> None:
    box.sh(REFERENCES)
    box.sh("printf aa > /app/f && touch -r /tmp/r1 /app/f")


def second_version(box: Box) -> None:
    """Same size, same second, another fraction: only the nanoseconds tell."""
    box.sh("printf bb > /app/f && touch -r /tmp/r2 /app/f")


def test_a_same_second_same_size_rewrite_is_listed_and_hinted(box: Box) -> None:
    first_version(box)
    ep = box.endpoint(poll_interval=0.2)

    async def scenario() -> tuple[Entry, Entry]:
        await ep.start(watch=True)
        try:
            before = (await ep.scan())[F]
            await asyncio.to_thread(second_version, box)
            deadline = time.monotonic() + 5
            seen: set[str] = set()
            while F not in seen:
                left = deadline - time.monotonic()
                assert left > 0, f"no hint for the rewrite within 5 s (got {sorted(seen)})"
                try:
                    seen.update(await asyncio.wait_for(ep.hints(), left))
                except TimeoutError:
                    continue
            return before, (await ep.scan())[F]
        finally:
            await ep.close()

    before, after = run(scenario())
    assert before.size == after.size == 2
    assert before.mtime_ns // 10**9 == after.mtime_ns // 10**9
    assert before.mtime_ns != after.mtime_ns
    assert before.mtime_ns % 10**9 != 0  # the fraction is read, not zero


def test_an_upload_or_deletion_expecting_the_older_version_leaves_the_newer_alone(
    box: Box,
) -> None:
    first_version(box)
    box.sh("mkdir -p /app/d && printf aa > /app/d/g && touch -r /tmp/r1 /app/d/g")
    ep = box.endpoint()
    snap = run(ep.scan())
    second_version(box)
    box.sh("printf bb > /app/d/g && touch -r /tmp/r2 /app/d/g")
    old_f, old_g = snap[F], snap[RelPath("d/g")]
    written = run(ep.write(items_of([file_item("f", b"local!", expect=old_f)])))
    deleted = run(ep.delete([DeleteItem(RelPath("d/g"), old_g)]))
    assert [p.path for p in written.problems] == ["f"], written
    assert "changed in the container" in written.problems[0].message
    assert [p.path for p in deleted.problems] == ["d/g"], deleted
    assert box.read("/app/f") == b"bb" and box.read("/app/d/g") == b"bb"
    # The expectation of what is there now, to the nanosecond, is met.
    now = run(ep.scan())
    written = run(ep.write(items_of([file_item("f", b"local!", expect=now[F])])))
    deleted = run(ep.delete([DeleteItem(RelPath("d/g"), now[RelPath("d/g")])]))
    assert written.problems == [] and deleted.problems == []
    assert box.read("/app/f") == b"local!" and not box.exists("/app/d/g")


def test_a_download_reports_the_mtime_a_scan_lists(box: Box) -> None:
    first_version(box)
    ep: ShellEndpoint = box.endpoint()

    async def scenario() -> tuple[Entry, Entry]:
        listed = (await ep.scan())[F]
        read = None
        async for source in ep.read([F]):
            read = source.entry
            async for _ in source.chunks():
                pass
        assert read is not None
        return listed, read

    listed, read = run(scenario())
    # Equal, so the ancestor recorded after a download does not look changed at the next scan.
    assert read == listed and listed.kind == FILE and listed.mtime_ns % 10**9 != 0

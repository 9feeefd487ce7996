"""Shell agent change detection (metadata polling) against a real busybox container."""

from __future__ import annotations

import asyncio
import time

import pytest
from shell_helpers import Box, wait_for

from podsync.core.excludes import Rules
from podsync.core.paths import RelPath
from podsync.engine.shell_endpoint import ShellEndpoint
from podsync.errors import SafetyHalt

pytestmark = pytest.mark.docker


async def hint_for(ep: ShellEndpoint, box: Box, script: str, want: str) -> tuple[float, set[str]]:
    """Run ``script`` in the container; seconds until a hint batch names ``want``."""
    await asyncio.to_thread(box.sh, script)
    started = time.monotonic()
    seen: set[str] = set()
    while want not in seen:
        left = 2.0 - (time.monotonic() - started)
        if left <= 0:
            raise AssertionError(f"no hint for {want!r} within 2 s (got {sorted(seen)})")
        try:
            seen.update(await asyncio.wait_for(ep.hints(), left))
        except TimeoutError:
            continue
    return time.monotonic() - started, seen


def test_create_modify_delete_are_hinted_within_two_seconds(box: Box) -> None:
    box.sh("mkdir -p /app/node_modules /app/src && : > /app/src/old.txt")
    ep = box.endpoint(Rules(["node_modules/"]))

    async def scenario() -> list[float]:
        await ep.start(watch=True)
        await ep.scan()
        took = []
        try:
            t, _ = await hint_for(ep, box, "printf a > /app/src/new.txt", "src/new.txt")
            took.append(t)
            t, _ = await hint_for(ep, box, "printf bb >> /app/src/old.txt", "src/old.txt")
            took.append(t)
            t, _ = await hint_for(ep, box, "rm /app/src/old.txt", "src/old.txt")
            took.append(t)
            t, _ = await hint_for(
                ep, box, "mkdir -p /app/newdir/x && : > /app/newdir/x/f", "newdir"
            )
            took.append(t)
            # a change inside an excluded dir is never hinted; a sentinel proves we looked
            t, seen = await hint_for(
                ep, box, ": > /app/node_modules/junk && : > /app/sentinel", "sentinel"
            )
            assert not [p for p in seen if p.startswith("node_modules")]
            # the same mtime but a different size is still seen (metadata, not mtime only)
            t, _ = await hint_for(
                ep, box, "printf 12345 > /app/sentinel && touch -d @1 /app/sentinel", "sentinel"
            )
            took.append(t)
        finally:
            await ep.close()
        return took

    took = asyncio.run(scenario())
    print("shell agent: change -> hint latencies (s):", [round(t, 2) for t in took])
    assert max(took) < 2.0


def test_close_leaves_no_process_in_the_container(box: Box) -> None:
    assert box.processes() == []
    tmp_before = box.sh("ls /tmp")
    ep = box.endpoint()

    async def scenario() -> None:
        await ep.start(watch=True)

        async def looping() -> bool:
            return any("cat" in p for p in await asyncio.to_thread(box.processes))

        await wait_for(looping, 10, "the poll loop and its stdin watcher to run")
        await ep.close()

    asyncio.run(scenario())

    async def none_left() -> bool:
        return await asyncio.to_thread(box.processes) == []

    asyncio.run(wait_for(none_left, 5, "no process left in the container"))
    # nor the loop's marker file (mktemp's default folder)
    assert box.sh("ls /tmp") == tmp_before


def test_hints_on_a_root_that_vanishes_halt_instead_of_waiting_forever(box: Box) -> None:
    box.sh("mkdir -p /app/sub && : > /app/sub/f")
    ep = box.endpoint(root="/app/sub")

    async def scenario() -> None:
        await ep.start(watch=True)
        await ep.scan()
        await asyncio.to_thread(box.sh, "rm -rf /app/sub")
        try:
            with pytest.raises(SafetyHalt, match="gone"):
                while True:  # a batch naming "f" may come first; then the halt
                    await asyncio.wait_for(ep.hints(), 5)
        finally:
            await ep.close()

    asyncio.run(scenario())


def cpu_ns(box: Box) -> int:
    """The container's cumulative CPU time (cgroup v1 cpuacct or v2 cpu.stat)."""
    out = box.sh(
        "cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || "
        "sed -n 's/^usage_usec //p' /sys/fs/cgroup/cpu.stat"
    ).strip()
    return int(out)


@pytest.mark.slow
@pytest.mark.parametrize("interval", [0.5, 1.0])
def test_idle_cpu_of_the_poll_loop_on_10k_files(box: Box, interval: float) -> None:
    box.sh(
        "cd /app && d=0; while [ $d -lt 100 ]; do mkdir d$d; f=0; while [ $f -lt 100 ]; do "
        ": > d$d/file-$f.txt; f=$((f+1)); done; d=$((d+1)); done"
    )
    v1 = box.sh("[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ] && echo v1", check=False) == b"v1\n"
    ep = box.endpoint(poll_interval=interval)
    window = 30.0

    async def scenario() -> float:
        await ep.start(watch=True)
        await ep.scan()
        poller = ep._poller
        assert poller is not None
        await wait_for(lambda: asyncio.sleep(0, poller.ticks >= 2), 20, "the loop to idle")
        before = await asyncio.to_thread(cpu_ns, box)
        started = time.monotonic()
        ticks = poller.ticks
        await asyncio.sleep(window)  # the measurement window itself, not a wait for a condition
        after = await asyncio.to_thread(cpu_ns, box)
        elapsed = time.monotonic() - started
        turns = poller.ticks - ticks
        assert turns >= window / (interval + 0.5) - 2, f"only {turns} polls in {window} s"
        await ep.close()
        used = (after - before) / (1e9 if v1 else 1e6)
        return used / elapsed

    share = asyncio.run(scenario())
    print(f"shell agent: idle CPU, 10,000 files, {interval} s poll: {share * 100:.1f} % of a core")
    assert share < 0.25


def test_a_change_undone_between_two_polls_is_still_hinted(box: Box) -> None:
    # Our own upload, then a user's rm before the loop looked again: the container ends as
    # the last poll saw it, but not as the engine believes it is.
    from shell_helpers import file_item, items_of

    ep = box.endpoint()

    async def scenario() -> list[RelPath]:
        await ep.start(watch=True)
        await ep.scan()
        result = await ep.write(items_of([file_item(f"f{i}.txt", b"x") for i in range(5)]))
        assert len(result.written) == 5
        await asyncio.to_thread(box.sh, "rm -f /app/f*.txt")
        try:
            seen: set[RelPath] = set()
            while len(seen) < 5:
                seen.update(await asyncio.wait_for(ep.hints(), 3))
            return sorted(seen)
        finally:
            await ep.close()

    assert asyncio.run(scenario()) == [f"f{i}.txt" for i in range(5)]


@pytest.mark.slow
def test_changes_that_leave_the_mtime_old_or_only_move_names_are_hinted(box: Box) -> None:
    # The idle poll walks for inodes changed within the last minute (ctime), then lists the
    # children of the changed folders. The tree is first left alone for that minute, so each
    # change below must be found on its own: a rewrite whose mtime is set back into the past
    # (its folder does not change), a chmod, renames (of a file, across folders, of a folder)
    # a deep deletion, and a deletion whose folder gets its old mtime back (rsync -a).
    box.sh(
        "mkdir -p /app/a/deep/er /app/b /app/d /app/r && printf 1 > /app/a/old && : > /app/a/x"
        " && : > /app/a/deep/er/f && : > /app/d/in && : > /app/r/gone && touch -d @1000"
        " /app/a/old /app/r"
    )

    async def quiet() -> bool:
        out = await asyncio.to_thread(box.sh, "find /app -cmin -1")
        return out == b""

    asyncio.run(wait_for(quiet, 100, "the tree to be unchanged for a minute"))
    ep = box.endpoint()

    async def scenario() -> None:
        await ep.start(watch=True)
        await ep.scan()
        try:
            await hint_for(ep, box, "printf 22 > /app/a/old && touch -d @1000 /app/a/old", "a/old")
            await hint_for(ep, box, "chmod +x /app/a/x", "a/x")
            await hint_for(ep, box, "mv /app/a/x /app/a/y", "a/y")
            _, seen = await hint_for(ep, box, "mv /app/a/y /app/b/y", "a/y")
            assert "b/y" in seen or await hint_for(ep, box, ":", "b/y")
            _, seen = await hint_for(ep, box, "mv /app/d /app/e", "d")
            assert "e" in seen or await hint_for(ep, box, ":", "e")
            await hint_for(ep, box, "rm -rf /app/a/deep/er", "a/deep/er")
            await hint_for(ep, box, "rm /app/r/gone && touch -d @1000 /app/r", "r")
        finally:
            await ep.close()

    asyncio.run(scenario())

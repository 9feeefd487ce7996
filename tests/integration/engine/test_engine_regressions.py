"""Focused engine scenarios (real engine in-process, real agent subprocess, local target) for
bugs the state machine found and for the watch-phase conflict rule, made deterministic.

- The agent is frozen with SIGSTOP while both sides edit the same file, then thawed: the engine
  is in its watch phase throughout (no reconnect), so this is the three-way watch-phase rule.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.engine.engine_helpers import (
    EngineThread,
    agent_pids,
    file_contents,
    local_spec,
    tree,
)
from tests.support.wait import wait_until


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Path, Path, EngineThread]]:
    local, far = tmp_path / "local", tmp_path / "far"
    local.mkdir()
    far.mkdir()
    (local / "keep").write_text("keeps the container side from looking emptied")
    engine = EngineThread(local_spec(local, far))
    try:
        wait_until(engine.watching, 20, message="engine never watching")
        yield local, far, engine
    finally:
        engine.stop()


def _busy_wait(seconds: float) -> None:
    """A precise short delay between two filesystem events (the race under test)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_container_subdirectory_created_right_after_its_parent(tmp_path: Path) -> None:
    """mkdir d; mkdir c; (a few ms later) mkdir d/y in the container: all must reach the local
    side. The agent's hint for [d, c] (with a listing of d taken before d/y existed) and its
    hint for [d/y] can both wait in the engine's buffer; the engine must not answer the scan
    of d with the older listing. A fresh engine per delay: that is when the race shows."""
    for ms in range(4, 17):
        local, far = tmp_path / f"local{ms}", tmp_path / f"far{ms}"
        local.mkdir()
        far.mkdir()
        (local / "keep").write_text("keep")
        engine = EngineThread(local_spec(local, far))
        try:
            wait_until(engine.watching, 20, message="engine never watching")
            os.mkdir(far / "d")
            os.mkdir(far / "c")
            _busy_wait(ms / 1000)
            os.mkdir(far / "d" / "y")
            try:
                wait_until(lambda local=local: (local / "d" / "y").is_dir(), 3)  # type: ignore[misc]
            except AssertionError:
                raise AssertionError(
                    f"d/y (made {ms} ms after d) never reached the local side; local has "
                    f"{sorted(p.name for p in local.iterdir())}\n{engine.output.getvalue()}"
                ) from None
        finally:
            engine.stop()


def test_stale_hint_listing_does_not_undo_our_upload(tmp_path: Path) -> None:
    """While a local file is being uploaded to a path that is empty in the container, the
    container creates that path and deletes it again. The agent's hint (with a listing taken
    before our upload landed: path absent) must not be applied over the upload's result:
    both sides end up with the local file."""
    local, far = tmp_path / "local", tmp_path / "far"
    local.mkdir()
    far.mkdir()
    (local / "keep").write_text("keep")
    engine = EngineThread(local_spec(local, far, bandwidth_upload=1024 * 1024))
    try:
        wait_until(engine.watching, 20, message="engine never watching")
        for attempt in range(3):  # the race shows in most attempts; three make it near certain
            _upload_while_container_flickers(tmp_path, local, far, f"a{attempt}")
    finally:
        engine.stop()


def _upload_while_container_flickers(tmp_path: Path, local: Path, far: Path, name: str) -> None:
    data = os.urandom(2 * 1024 * 1024)  # ~2 s at 1 MiB/s
    staged = tmp_path / "staged"
    staged.write_bytes(data)
    os.replace(staged, local / name)
    wait_until(lambda: any(p.name.startswith(".podsync-") for p in far.iterdir()), 10)
    (far / name).write_text("container")  # while our upload is in flight
    os.unlink(far / name)
    wait_until(lambda: (far / name).exists(), 10, message="upload never landed")

    def same() -> bool:
        return tree(local, frozenset({".devspace"})) == tree(far)

    def state() -> str:
        log = (local / ".devspace/logs/sync.log").read_text()
        return (
            f"local {sorted(tree(local, frozenset({'.devspace'})))}, "
            f"container {sorted(tree(far))}\n{log}"
        )

    try:
        wait_until(same, 5)
    except AssertionError:
        raise AssertionError(f"never converged: {state()}") from None
    assert read(local / name) == data, f"the local file is gone: {state()}"


def read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _conflict(local: Path, far: Path, name: str, tag: str) -> tuple[bytes, bytes]:
    """Edit ``name`` on both sides while the agent is frozen; return (local, container) data."""
    (pid,) = agent_pids(far)
    ours, theirs = f"local {tag}\n".encode(), f"container {tag}\n".encode()
    os.kill(pid, signal.SIGSTOP)
    try:
        (far / name).write_bytes(theirs)
        (local / name).write_bytes(ours)
    finally:
        # Whatever the engine did meanwhile (an upload queued to the frozen agent, or nothing
        # yet), both edits are now on disk before the agent can report the container's.
        os.kill(pid, signal.SIGCONT)
    return ours, theirs


def test_watch_phase_conflict_local_wins_and_every_container_version_is_kept(
    pair: tuple[Path, Path, EngineThread],
) -> None:
    local, far, engine = pair
    (local / "f.txt").write_text("v0\n")
    wait_until(lambda: (far / "f.txt").exists(), 10)
    conflicts = local / ".devspace" / "conflicts"
    saved: list[bytes] = []
    for round_ in range(3):  # quickly: at least two conflicts fall in the same second
        ours, theirs = _conflict(local, far, "f.txt", str(round_))
        saved.append(theirs)
        wait_until(
            lambda ours=ours: (far / "f.txt").read_bytes() == ours,  # type: ignore[misc]
            10,
            message=f"local version never won in the container:\n{engine.output.getvalue()}",
        )
        assert (local / "f.txt").read_bytes() == ours
    kept = file_contents(conflicts) if conflicts.exists() else set()
    assert set(saved) <= kept, (
        f"container versions lost: {set(saved) - kept}; conflicts/ holds {kept}\n"
        f"{engine.output.getvalue()}"
    )
    # The container already holds the local version when the batch's conflict line is
    # printed: wait for it rather than read the console at once.
    wait_until(
        lambda: engine.output.getvalue().count("conflict: f.txt") >= 3,
        10,
        message=f"fewer than 3 conflicts reported:\n{engine.output.getvalue()}",
    )

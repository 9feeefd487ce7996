"""Faults end to end: a failed transfer leaves the old file intact, a killed agent leaves no
half-written file and the sync recovers, a watch-phase conflict keeps the container's version,
and nothing the container writes can make podsync write outside the local folder.

Real CLI processes and containers; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import Target
from tests.e2e.harness import DockerFar, SyncProcess, read_local
from tests.integration.engine.engine_helpers import agent_pids
from tests.support import docker as d
from tests.support.wait import wait_until

MIB = 1024 * 1024


def start(target: Target, workdir: Path, running: list[SyncProcess], *extra: str) -> SyncProcess:
    proc = SyncProcess(["--local-path", str(workdir), *target.args, *extra], cwd=workdir)
    running.append(proc)
    return proc


def leftovers(far: DockerFar | Target) -> str:
    far_side = far.far if isinstance(far, Target) else far
    root = shlex.quote(far_side.root)
    return far_side.sh(f"find {root} -name '.podsync-*' 2>/dev/null || true")


def container_agent_pids(container: str) -> list[str]:
    out = d.docker("exec", container, "ps", "-o", "pid,args").stdout.decode()
    return [ln.split()[0] for ln in out.splitlines() if "agent-" in ln and " serve " in ln]


def container_watcher_pids(container: str) -> list[str]:
    """The process that notices container-side changes: the Python agent, or the shell
    agent's poll loop (not its short-lived subshells, which carry the same command line)."""
    found = container_agent_pids(container)
    if found:
        return found
    out = d.docker("exec", container, "ps", "-o", "pid,ppid,args").stdout.decode()
    loops = {
        ln.split()[0]: ln.split()[1] for ln in out.splitlines() if "=NOROOT" in ln and "find" in ln
    }
    return [pid for pid, ppid in loops.items() if ppid not in loops]


def far_size(far: DockerFar, rel: str) -> int | None:
    out = far.sh(f"stat -c %s {shlex.quote(far.root + '/' + rel)} 2>/dev/null || true")
    return int(out) if out.isdigit() else None


# -- a failed transfer leaves the old file intact -------------------------------------------
@pytest.fixture
def tiny_container(request: pytest.FixtureRequest) -> Iterator[str]:
    """A container whose /app is a 1 MiB tmpfs (a full disk on demand)."""
    from tests.conftest import _require_docker

    _require_docker()
    image = getattr(request, "param", d.PY_IMAGE)
    name = f"podsync-test-{uuid.uuid4().hex[:10]}"
    argv = ["run", "-d", "--network", "none", "--label", d.LABEL, "--name", name]
    result = d.docker(*argv, "--tmpfs", "/app:size=1m", "--workdir", "/app", image)
    assert result.returncode == 0, result.stderr.decode()
    try:
        yield name
    finally:
        d.remove_container(name)


@pytest.mark.parametrize(
    "tiny_container", [d.PY_IMAGE, d.BUSYBOX_IMAGE], ids=["python", "shell"], indirect=True
)
def test_disk_full_in_container_keeps_the_old_file(
    tiny_container: str, workdir: Path, running: list[SyncProcess]
) -> None:
    far = DockerFar(tiny_container)
    old = os.urandom(100 * 1024)
    (workdir / "data.bin").write_bytes(old)
    proc = SyncProcess(["--local-path", str(workdir), "--docker", tiny_container], cwd=workdir)
    running.append(proc)
    proc.wait_watching()
    assert far.read("data.bin") == old

    staged = workdir.parent / "data.staged"
    staged.write_bytes(os.urandom(2 * MIB))  # does not fit in the 1 MiB /app
    os.replace(staged, workdir / "data.bin")
    wait_until(
        lambda: re.search(r"problem: data\.bin: .+", proc.output) is not None,
        20,
        message=f"no problem reported for the failed upload:\n{proc.output}",
    )
    assert far.read("data.bin") == old, "the failed transfer damaged the container's file"
    assert leftovers(far) == "", "temp file left behind"
    log = (workdir / ".devspace" / "logs" / "sync.log").read_text()
    assert re.search(r"problem: data\.bin", log), log
    assert proc.proc.poll() is None, f"podsync died:\n{proc.output}"

    # The sync is still alive: a change that fits goes through.
    (workdir / "small.txt").write_text("fits")
    wait_until(lambda: far.read("small.txt") == b"fits", 10, message=proc.output)


# -- an agent killed in the middle of a large upload ------------------------------------------
@pytest.mark.docker
def test_agent_killed_mid_upload_leaves_no_partial_file_and_recovers(
    py_container: str, workdir: Path, running: list[SyncProcess]
) -> None:
    far = DockerFar(py_container)
    (workdir / "small.txt").write_text("s")
    # 20 MiB/s: the 50 MiB upload lasts ~2.5 s, long enough to kill the agent inside it.
    proc = SyncProcess(
        ["--local-path", str(workdir), "--docker", py_container, "--bandwidth-upload", "20480"],
        cwd=workdir,
    )
    running.append(proc)
    proc.wait_watching()
    data = os.urandom(50 * MIB)
    digest = hashlib.sha256(data).hexdigest()
    staged = workdir.parent / "big.staged"
    staged.write_bytes(data)
    os.replace(staged, workdir / "big.bin")

    def temp_bytes() -> int:
        out = far.sh("find /app -name '.podsync-*' -type f -exec stat -c %s {} + || true")
        return sum(int(x) for x in out.split() if x.isdigit())

    wait_until(lambda: temp_bytes() > 4 * MIB, 20, interval=0.05, message="upload never began")
    (pid,) = container_agent_pids(py_container)
    assert d.docker("exec", py_container, "kill", "-9", pid).returncode == 0
    assert far_size(far, "big.bin") is None, "a partial file appeared at the target path"

    partial: list[int] = []

    def complete() -> bool:
        size = far_size(far, "big.bin")
        if size is not None and size != len(data):
            partial.append(size)
        return size == len(data)

    wait_until(complete, 60, interval=0.1, message=f"upload never completed:\n{proc.output}")
    assert not partial, f"partial file visible at the target path: sizes {partial}"
    assert far.sh("sha256sum /app/big.bin").split()[0] == digest
    assert "connection lost" in proc.output, proc.output
    wait_until(lambda: leftovers(far) == "", 10, message="temp file left after recovery")
    assert len(container_agent_pids(py_container)) == 1


# -- a conflicting edit during the watch phase ------------------------------------------------
@contextlib.contextmanager
def agent_frozen(target: Target) -> Iterator[None]:
    """SIGSTOP the agent or the shell agent's poll loop (the sync keeps running, the
    container's edits go unseen), then SIGCONT it."""
    if target.container:
        (pid,) = container_watcher_pids(target.container)
        d.docker("exec", target.container, "kill", "-STOP", pid)
        try:
            yield
        finally:
            d.docker("exec", target.container, "kill", "-CONT", pid)
    else:
        (local_pid,) = agent_pids(Path(target.far.root))
        os.kill(local_pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(local_pid, signal.SIGCONT)


def test_watch_phase_conflict_local_wins_and_container_version_is_kept(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "f.txt").write_text("v0\n")
    proc = start(target, workdir, running)
    proc.wait_watching()
    assert target.far.read("f.txt") == b"v0\n"
    with agent_frozen(target):
        target.far.write("f.txt", b"container edit\n")
        (workdir / "f.txt").write_text("local edit\n")
    wait_until(
        lambda: target.far.read("f.txt") == b"local edit\n",
        15,
        message=f"local version never won:\n{proc.output}",
    )
    conflicts = workdir / ".devspace" / "conflicts"
    wait_until(lambda: conflicts.exists() and any(conflicts.rglob("f.txt")), 10)
    saved = [p.read_bytes() for p in conflicts.rglob("f.txt")]
    assert b"container edit\n" in saved, saved
    assert (workdir / "f.txt").read_text() == "local edit\n"
    wait_until(lambda: "conflict: f.txt" in proc.output, 5, message=proc.output)
    # The conflicts folder itself is never synced.
    assert not target.far.exists(".devspace")


def test_initial_sync_conflict_then_local_edit_keeps_the_container_copy(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    """The container's newer copy is left alone by the initial sync; a later local edit wins,
    but only after the container's version was saved under .devspace/conflicts/."""
    (workdir / "page.html").write_text("local, older")
    os.utime(workdir / "page.html", (1_000_000_000, 1_000_000_000))
    target.far.write("page.html", b"container, newer")
    proc = start(target, workdir, running)
    proc.wait_watching()
    assert "conflict: page.html" in proc.output, proc.output
    assert target.far.read("page.html") == b"container, newer"
    assert (workdir / "page.html").read_text() == "local, older"

    (workdir / "page.html").write_text("local, edited later")
    wait_until(
        lambda: target.far.read("page.html") == b"local, edited later",
        10,
        message=f"the local edit was not uploaded:\n{proc.output}",
    )
    saved = [p.read_bytes() for p in (workdir / ".devspace" / "conflicts").rglob("page.html")]
    assert b"container, newer" in saved, f"container version not kept: {saved}"


# -- nothing from the container escapes the local folder --------------------------------------
def test_container_links_and_names_cannot_escape_the_local_folder(
    target: Target, tmp_path: Path, workdir: Path, running: list[SyncProcess]
) -> None:
    outside_local = tmp_path / "outside-local"
    outside_local.mkdir()
    # A local link leaving the root (skipped) where the container has a real directory.
    (workdir / "trap").symlink_to(outside_local)
    far = target.far
    root = shlex.quote(far.root)
    elsewhere = "/outside" if target.container else str(tmp_path / "outside-far")
    far.sh(f"mkdir -p {elsewhere} {root}/trap && echo inside > {root}/trap/x")
    far.sh(f"ln -s {elsewhere} {root}/evil && ln -s ../../../../../.. {root}/up")
    far.sh(f"echo through > {root}/evil/through.txt")  # lands outside the container root
    far.sh(f"printf x > {root}/'back\\slash' && echo 1 > {root}/ok1.txt")
    proc = start(target, workdir, running, "--download-on-initial-sync")
    proc.wait_watching()
    assert read_local(workdir, "ok1.txt") == b"1\n"

    # Watch phase: the container writes through its escaping links and adds another one.
    far.sh(f"echo again > {root}/evil/again.txt && ln -s / {root}/root-link")
    far.sh(f"mkdir -p {root}/trap/sub && echo deeper > {root}/trap/sub/y")
    far.sh(f"echo 2 > {root}/ok2.txt")
    wait_until(lambda: read_local(workdir, "ok2.txt") == b"2\n", 10, message=proc.output)

    assert list(outside_local.iterdir()) == [], "podsync wrote through a local link"
    for name in ("evil", "up", "root-link"):
        path = workdir / name
        assert not path.exists() or not path.is_symlink(), f"escaping link {name} downloaded"
    assert not (workdir / "through.txt").exists() and not (workdir / "again.txt").exists()
    assert not any("\\" in p.name for p in workdir.iterdir())
    assert proc.proc.poll() is None, proc.output

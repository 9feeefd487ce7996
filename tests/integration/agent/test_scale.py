"""No size ceiling with the python agent (issue 8, defect 6): a 150k-entry tree and a single
directory of 50k files go through every phase (initial sync, no-op re-run, watch, reconnect
after the agent is killed), and ``--container-path /`` lists without hitting a frame limit.

Real CLI processes and real containers. The large runs are ``slow`` (run once in CI); every
wait has a deadline and nothing here measures speed (that is bench/).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.harness import SyncProcess
from tests.integration.agent.agent_helpers import Loop, agent_pids_in, start_agent
from tests.support import docker as d
from tests.support.wait import wait_until

from podsync.transport.docker import DockerTransport

pytestmark = pytest.mark.docker


@pytest.fixture
def big_container() -> Iterator[str]:
    """A python container; removing 150k files from its layer takes longer than the
    helpers' default CLI timeout on a loaded machine."""
    from tests.conftest import _require_docker

    _require_docker()
    name = d.start_container(d.PY_IMAGE)
    try:
        yield name
    finally:
        d.docker("rm", "-f", "-v", name, timeout=900)


def make_tree(root: Path, dirs: int, files_per_dir: int) -> int:
    """``dirs`` folders of ``files_per_dir`` small files; the number of entries."""
    for i in range(dirs):
        folder = root / f"pkg{i:05d}"
        folder.mkdir()
        for j in range(files_per_dir):
            (folder / f"f{j:03d}.js").write_bytes(b"x")
    return dirs * (files_per_dir + 1)


def container_count(container: str, path: str) -> int:
    out = d.docker("exec", container, "sh", "-c", f"find {path} -mindepth 1 | wc -l").stdout
    return int(out.decode().strip() or 0)


def sync(workdir: Path, container: str, *extra: str) -> SyncProcess:
    return SyncProcess(["--local-path", str(workdir), "--docker", container, *extra], workdir)


def run_once(workdir: Path, container: str, *extra: str, timeout: float = 600) -> str:
    proc = sync(workdir, container, "--no-watch", *extra)
    code = proc.finish(timeout)
    assert code == 0, proc.output[-3000:]
    assert "oversized" not in proc.output
    return proc.output


def watch_phase_and_reconnect(workdir: Path, container: str, sub: str) -> None:
    """Watch: a change each way; then kill the agent: a reconnect, and changes flow again."""
    proc = sync(workdir, container)
    try:
        proc.wait_watching(300)
        (workdir / sub / "local-edit.js").write_bytes(b"edited here")
        wait_until(
            lambda: (
                d.docker_exec(container, ["cat", f"/app/{sub}/local-edit.js"]).stdout
                == b"edited here"
            ),
            60,
            message=proc.output[-3000:],
        )
        d.docker_exec(container, ["sh", "-c", f"echo there > /app/{sub}/remote-edit.js"])
        wait_until(lambda: (workdir / sub / "remote-edit.js").exists(), 60, message=proc.output)
        (pid,) = agent_pids_in(container)
        d.docker_exec(container, ["kill", "-9", pid])
        wait_until(lambda: "connection lost" in proc.output, 60, message=proc.output[-3000:])
        wait_until(lambda: proc.output.count("watching for changes") >= 2, 300, message=proc.output)
        (workdir / sub / "after-reconnect.js").write_bytes(b"again")
        wait_until(
            lambda: (
                d.docker_exec(container, ["cat", f"/app/{sub}/after-reconnect.js"]).stdout
                == b"again"
            ),
            60,
            message=proc.output[-3000:],
        )
        assert "oversized" not in proc.output
        assert proc.proc.poll() is None, proc.output[-3000:]
    finally:
        proc.stop()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_150k_entry_tree_in_every_phase(big_container: str, tmp_path: Path) -> None:
    py_container = big_container
    workdir = tmp_path / "project"
    workdir.mkdir()
    entries = make_tree(workdir, 1500, 99)
    assert entries == 150_000
    started = time.monotonic()
    run_once(workdir, py_container)
    print(f"initial sync of {entries} entries: {time.monotonic() - started:.0f} s")
    assert container_count(py_container, "/app") == entries
    again = run_once(workdir, py_container)
    assert "already in sync" in again, again[-2000:]
    watch_phase_and_reconnect(workdir, py_container, "pkg00007")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_single_directory_of_50k_files_in_every_phase(big_container: str, tmp_path: Path) -> None:
    """Created in the container (the download direction), then a burst of 5000 more files in
    the same folder while watching (a hint too large for one message: the engine lists the
    folder with a streamed scan)."""
    py_container = big_container
    make = (
        "import os\n"
        "os.makedirs('/app/flat', exist_ok=True)\n"
        "for i in range(50000):\n"
        "    open('/app/flat/f%05d.txt' % i, 'w').write('x')\n"
    )
    assert d.docker_exec(py_container, ["python3", "-c", make]).returncode == 0
    workdir = tmp_path / "project"
    workdir.mkdir()
    run_once(workdir, py_container, "--download-on-initial-sync")
    assert len(os.listdir(workdir / "flat")) == 50_000
    assert "already in sync" in run_once(workdir, py_container, "--download-on-initial-sync")
    proc = sync(workdir, py_container)
    try:
        proc.wait_watching(300)
        burst = (
            "import os\n"
            "for i in range(5000):\n"
            "    open('/app/flat/burst%04d.txt' % i, 'w').write('y')\n"
        )
        assert d.docker_exec(py_container, ["python3", "-c", burst]).returncode == 0
        wait_until(
            lambda: len(os.listdir(workdir / "flat")) == 55_000, 300, message=proc.output[-3000:]
        )
    finally:
        proc.stop()
    watch_phase_and_reconnect(workdir, py_container, "flat")


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def test_the_container_root_lists_without_a_frame_limit(py_container: str, loop: Loop) -> None:
    """``--container-path /``: the whole container (with /proc, /sys, /usr) in pieces."""
    session = loop.run(start_agent(DockerTransport(py_container), "/"))
    try:
        listing = loop.run(session.endpoint.scan(), 300)
        print(f"container root: {len(listing)} entries")
        assert len(listing) > 5000
        assert any(path.startswith("usr/lib/") for path in listing)
    finally:
        loop.run(session.endpoint.close(), 10)

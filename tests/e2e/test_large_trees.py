"""No ceiling on size or duration (issue 8, defects 6 and 7), end to end on real containers.

- A ~120k-entry tree made in the container syncs with the Python agent: the initial sync with
  download-on-initial-sync compares every entry and downloads what is missing, a second run is
  a no-op that uses the saved state, and the watch phase stays connected while container edits
  arrive (no "oversized frame", no reconnect loop).
- The same ~120k-entry local tree uploads to a fresh container and is watched; podsync's peak
  RSS stays bounded in every run.
- Throttled transfers lasting longer than 40 s, both directions and both agents, complete on
  the first connection: liveness is judged by progress, not by a reply to a ping.
- The shell agent (busybox) watches a ~120k-entry tree: edits arrive both ways over one
  connection while its poll walks list the whole tree (no halt, no cut listing).
- The container root as the container path (``/``: /usr, /proc) is listed without a size limit.

Real CLI processes and containers; every wait has a deadline; nothing here measures speed
(figures printed are for the report, bench/ measures). Marked ``scale``: they run in the
default suite (deselect with ``-m "not scale"`` for a quick local run).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.e2e.harness import SyncProcess, read_local
from tests.support import docker as d
from tests.support.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.scale]

MIB = 1024 * 1024
#: The issue's target for podsync's own memory with a node_modules-sized tree.
RSS_LIMIT_BYTES = 250 * MIB
#: Errors that must never appear in these runs.
BAD = (
    "oversized",
    "Traceback",
    "problem:",
    "connection lost",
    "did not answer",
    "no progress",
    "took in",
)

#: ``python3 TREE ROOT DIRS FILES [EXTRA]``: DIRS folders of FILES small files (sizes 0-6
#: bytes) with fixed mtimes, so the same tree made twice is equal entry by entry; EXTRA more
#: files in ``only/``. One process, not one exec per file.
TREE = r"""
import os, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
extra = int(sys.argv[4]) if len(sys.argv) > 4 else 0
def make(folder, names, n):
    os.makedirs(folder, exist_ok=True)
    for j in range(n):
        path = "%s/%s%04d.js" % (folder, names, j)
        with open(path, "wb") as handle:
            handle.write(b"x" * (j % 7))
        os.utime(path, ns=(1600000000 * 10**9 + j, 1600000000 * 10**9 + j))
for i in range(dirs):
    make("%s/node_modules/pkg%04d/lib" % (root, i), "f", files)
if extra:
    make(root + "/only", "g", extra)
for top, subdirs, _ in os.walk(root):
    for name in subdirs:
        os.utime(os.path.join(top, name), ns=(1600000000 * 10**9, 1600000000 * 10**9))
"""


def entries_of(dirs: int, files: int) -> int:
    """Entries TREE makes without EXTRA: node_modules, then per folder pkg, lib and files."""
    return 1 + dirs * (files + 2)


def make_local_tree(root: Path, dirs: int, files: int) -> None:
    argv = [sys.executable, "-c", TREE, str(root), str(dirs), str(files)]
    subprocess.run(argv, check=True, timeout=300)


def make_container_tree(container: str, dirs: int, files: int, extra: int) -> None:
    argv = ["python3", "-c", TREE, "/app", str(dirs), str(files), str(extra)]
    result = d.docker("exec", container, *argv, timeout=300)
    assert result.returncode == 0, result.stderr.decode()


def container_count(container: str) -> int:
    script = "find /app -mindepth 1 | wc -l"
    return int(d.docker("exec", container, "sh", "-c", script).stdout.decode().strip() or 0)


@pytest.fixture
def tmpfs_containers() -> Iterator[Callable[[str], str]]:
    """Starts containers of an image whose /app is a tmpfs (120k files are made and removed
    in seconds, not written through the overlay filesystem); all removed at the end."""
    from tests.conftest import _require_docker

    _require_docker()
    started: list[str] = []

    def start(image: str) -> str:
        name = f"podsync-test-{uuid.uuid4().hex[:10]}"
        argv = ["run", "-d", "--network", "none", "--label", d.LABEL, "--name", name]
        result = d.docker(*argv, "--tmpfs", "/app:size=1g", "--workdir", "/app", image)
        assert result.returncode == 0, result.stderr.decode()
        started.append(name)
        return name

    yield start
    for name in started:
        d.remove_container(name)


class PeakRss:
    """Samples a process's peak resident set (VmHWM) until it exits or :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> bool:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return False
        found = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
        if found is None:  # a zombie has no memory lines
            return False
        self.peak = max(self.peak, int(found.group(1)) * 1024)
        return True

    def _run(self) -> None:
        while not self._done.is_set() and self._sample():
            self._done.wait(0.05)

    def stop(self) -> int:
        self._sample()
        self._done.set()
        self._thread.join(5)
        return self.peak


class Runs:
    """``podsync sync`` processes of one test, each with its peak RSS recorded."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.peaks: dict[str, int] = {}

    def start(self, container: str, *extra: str) -> tuple[SyncProcess, PeakRss]:
        proc = sync(self.workdir, container, *extra)
        return proc, PeakRss(proc.proc.pid)

    def measured(self, label: str, rss: PeakRss) -> None:
        self.peaks[label] = rss.stop()
        print(f"{label}: podsync peak RSS {self.peaks[label] / MIB:.0f} MiB")

    def once(self, label: str, container: str, *extra: str) -> str:
        started = time.monotonic()
        proc, rss = self.start(container, "--no-watch", *extra)
        code = proc.finish(240)
        self.measured(label, rss)
        print(f"{label}: {time.monotonic() - started:.1f} s")
        assert code == 0, proc.output[-4000:]
        clean(proc.output)
        return proc.output


def sync(workdir: Path, container: str, *extra: str) -> SyncProcess:
    return SyncProcess(["--local-path", str(workdir), "--docker", container, *extra], workdir)


def clean(output: str) -> None:
    for needle in BAD:
        assert needle not in output, f"{needle!r} in the output:\n{output[-4000:]}"


def log_of(workdir: Path) -> str:
    return (workdir / ".devspace" / "logs" / "sync.log").read_text(errors="replace")


def local_holds(workdir: Path, rel: str, body: bytes) -> bool:
    return read_local(workdir, rel) == body


def far_read(container: str, rel: str) -> bytes:
    return d.docker_exec(container, ["cat", f"/app/{rel}"]).stdout


# -- defect 6: a 120k-entry tree, every phase ------------------------------------------------
@pytest.mark.timeout(900)
def test_a_120k_entry_tree_in_every_phase(
    tmpfs_containers: Callable[[str], str], tmp_path: Path
) -> None:
    """Made in a container; the local folder holds the same tree except ``only/`` (2000
    files), so the initial sync (Python agent) compares ~120k entries each side and
    downloads 2000; a no-op re-run; the watch phase with container edits arriving. Then the
    same local tree uploads to a fresh container and is watched. podsync's peak RSS stays
    bounded in every run. (The shell agent at this size: the next test.)"""
    dirs, files, extra = 120, 1000, 2000
    container = tmpfs_containers(d.PY_IMAGE)
    make_container_tree(container, dirs, files, extra)
    workdir = tmp_path / "project"
    make_local_tree(workdir, dirs, files)
    total = entries_of(dirs, files) + 1 + extra
    assert container_count(container) == total
    runs = Runs(workdir)

    first = runs.once("initial sync (download)", container, "--download-on-initial-sync")
    assert len(os.listdir(workdir / "only")) == extra, first[-3000:]
    assert read_local(workdir, "only/g0006.js") == b"x" * 6
    assert f"{total} container entries" in log_of(workdir), log_of(workdir)[-3000:]

    again = runs.once("no-op re-run", container, "--download-on-initial-sync")
    assert "already in sync" in again, again[-3000:]
    assert "ignoring the saved sync state" not in again, again[-3000:]

    proc, rss = runs.start(container)
    try:
        proc.wait_watching(180)
        watching = time.monotonic()
        # Edits keep arriving until the watch phase has run for 12 s (past the pings and any
        # listing the agent sends once its watcher runs).
        edit = 0
        while edit < 2 or time.monotonic() - watching < 12:
            edit += 1
            rel = f"node_modules/pkg{edit * 7 % dirs:04d}/lib/f0003.js"
            body = f"edit {edit}".encode()
            d.docker_exec(container, ["sh", "-c", f"printf 'edit {edit}' > /app/{rel}"])
            wait_until(
                functools.partial(local_holds, workdir, rel, body),
                60,
                message=f"edit {edit} never arrived:\n{proc.output[-3000:]}",
            )
        runs.measured("watch (container edits)", rss)
        assert proc.proc.poll() is None, proc.output[-3000:]
        clean(proc.output)
        assert proc.output.count("connected:") == 1, proc.output[-3000:]
    finally:
        rss.stop()
        proc.stop()

    # The same tree (and the 2000 downloaded files) uploads to a fresh container.
    fresh = tmpfs_containers(d.PY_IMAGE)
    started = time.monotonic()
    proc, rss = runs.start(fresh)
    try:
        proc.wait_watching(240)
        print(f"initial upload of {total} entries: {time.monotonic() - started:.1f} s")
        assert container_count(fresh) == total
        (workdir / "node_modules" / "pkg0042" / "lib" / "f0005.js").write_bytes(b"local edit")
        wait_until(
            lambda: far_read(fresh, "node_modules/pkg0042/lib/f0005.js") == b"local edit",
            60,
            message=proc.output[-3000:],
        )
        runs.measured("initial upload + watch", rss)
        assert proc.proc.poll() is None, proc.output[-3000:]
        clean(proc.output)
    finally:
        rss.stop()
        proc.stop()
    worst = max(runs.peaks.values())
    assert worst <= RSS_LIMIT_BYTES, (
        f"peak RSS (MiB): { {k: v // MIB for k, v in runs.peaks.items()} }"
    )


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a tmpfs (/dev/shm) when there is one, else ``tmp_path``: 120k local files
    are made in seconds there instead of 30-50 s on a loaded ext4."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="podsync-scale-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(600)
def test_a_120k_entry_tree_watched_with_the_shell_agent(
    tmpfs_containers: Callable[[str], str], fast_dir: Path
) -> None:
    """The shell agent (busybox, no python3) with ~120k entries in watch mode: the same tree
    on both sides (made locally, copied with one tar stream), so the initial sync compares
    120k entries and transfers nothing; then every file changed within the poll loop's
    ``-cmin -1`` window, so its walks list the whole tree for a minute. Container and local
    edits must keep arriving over one connection, with no halt ("looks empty"), no
    "garbled" listing and no reconnect (the defect: a cut or empty poll or scan listing read
    as "the container is empty")."""
    dirs, files = 120, 1000
    workdir = fast_dir / "project"
    make_local_tree(workdir, dirs, files)
    container = tmpfs_containers(d.BUSYBOX_IMAGE)
    copy = f"tar -C {workdir} -cf - . | docker exec -i {container} tar -xf - -C /app"
    subprocess.run(copy, shell=True, check=True, timeout=180, env=d.docker_env())
    total = entries_of(dirs, files)
    assert container_count(container) == total
    started = time.monotonic()
    proc = sync(workdir, container, "--agent", "shell")
    rss = PeakRss(proc.proc.pid)
    try:
        proc.wait_watching(240)
        print(f"shell agent, {total} entries: watching after {time.monotonic() - started:.1f} s")
        watching = time.monotonic()
        edit = 0
        # Past the first full listing and deep into the minute when every walk lists all.
        while edit < 2 or time.monotonic() - watching < 30:
            edit += 1
            rel = f"node_modules/pkg{edit * 7 % dirs:04d}/lib/f0003.js"
            body = f"edit {edit}".encode()
            d.docker_exec(container, ["sh", "-c", f"printf 'edit {edit}' > /app/{rel}"])
            wait_until(
                functools.partial(local_holds, workdir, rel, body),
                60,
                message=f"edit {edit} never arrived:\n{proc.output[-3000:]}",
            )
            assert proc.proc.poll() is None, proc.output[-3000:]
        (workdir / "node_modules" / "pkg0042" / "lib" / "f0005.js").write_bytes(b"local edit")
        wait_until(
            lambda: far_read(container, "node_modules/pkg0042/lib/f0005.js") == b"local edit",
            60,
            message=proc.output[-3000:],
        )
        print(f"shell agent watch: {edit} container edits in {time.monotonic() - watching:.0f} s")
        assert proc.proc.poll() is None, proc.output[-3000:]
        clean(proc.output)
        for needle in ("halted", "looks empty", "garbled", "cut short", "listing failed"):
            assert needle not in proc.output, proc.output[-3000:]
        assert proc.output.count("connected:") == 1, proc.output[-3000:]
        assert container_count(container) == total
    finally:
        peak = rss.stop()
        proc.stop()
    print(f"shell agent 120k initial + watch: podsync peak RSS {peak / MIB:.0f} MiB")


# -- defect 7: transfers longer than 40 s ----------------------------------------------------
def _random_file(path: Path, size: int, staging: Path) -> str:
    """``size`` random bytes (incompressible: the limit paces every byte) written in
    ``staging`` (outside the synced folder) and renamed to ``path``; their SHA-256."""
    data = os.urandom(size)
    staged = staging / f".{path.name}.{uuid.uuid4().hex[:6]}.staged"
    staged.write_bytes(data)
    os.replace(staged, path)
    return hashlib.sha256(data).hexdigest()


def _far_sha(container: str, rel: str) -> str | None:
    result = d.docker("exec", container, "sha256sum", f"/app/{rel}")
    return result.stdout.decode().split()[0] if result.returncode == 0 else None


@pytest.mark.timeout(600)
def test_throttled_transfers_longer_than_40s_both_ways_both_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2.5 MiB upload or download at 56 KiB/s (~45 s) per agent and direction, each in its
    own sync so all four run at once (one sync moves one batch at a time).
    PODSYNC_LIVENESS_SECONDS=8: the Python agent's link calls an agent stalled after 8 s
    without progress, so these transfers only finish on the first connection if the judge
    sees progress during them, not a ping answered (the shell agent has no link of its own:
    it must simply not fail)."""
    from tests.conftest import _require_docker

    _require_docker()
    monkeypatch.setenv("PODSYNC_LIVENESS_SECONDS", "8")
    size, rate_kb = 5 * MIB // 2, "56"
    runs: list[tuple[str, str, str, Path, SyncProcess]] = []  # kind, way, container, dir, proc
    try:
        for image, kind in ((d.PY_IMAGE, "python"), (d.BUSYBOX_IMAGE, "shell")):
            for way in ("upload", "download"):
                name = d.start_container(image)
                workdir = tmp_path / f"{kind}-{way}"
                workdir.mkdir()
                limit = [f"--bandwidth-{way}", rate_kb]
                runs.append(
                    (kind, way, name, workdir, sync(workdir, name, "--agent", kind, *limit))
                )
        for *_, proc in runs:
            proc.wait_watching(120)
        started = time.monotonic()
        expect: dict[str, str] = {}
        for kind, way, name, workdir, _ in runs:
            if way == "upload":
                expect[f"{kind} {way}"] = _random_file(workdir / "big.bin", size, tmp_path)
                continue
            source = tmp_path / f"{kind}.bin"
            expect[f"{kind} {way}"] = _random_file(source, size, tmp_path)
            copy = d.docker("cp", str(source), f"{name}:/tmp/big.bin")
            assert copy.returncode == 0, copy.stderr.decode()
            moved = d.docker("exec", name, "mv", "/tmp/big.bin", "/app/big.bin")
            assert moved.returncode == 0, moved.stderr.decode()

        done: dict[str, float] = {}

        def arrived(kind: str, way: str, name: str, workdir: Path) -> bool:
            if way == "upload":
                return _far_sha(name, "big.bin") == expect[f"{kind} {way}"]
            data = read_local(workdir, "big.bin")
            return data is not None and hashlib.sha256(data).hexdigest() == expect[f"{kind} {way}"]

        def all_arrived() -> bool:
            for kind, way, name, workdir, _ in runs:
                if f"{kind} {way}" not in done and arrived(kind, way, name, workdir):
                    done[f"{kind} {way}"] = time.monotonic() - started
            return len(done) == len(runs)

        wait_until(all_arrived, 240, interval=0.5, message=f"arrived: {done}")
        print("throttled transfers (s): " + ", ".join(f"{k} {v:.0f}" for k, v in done.items()))
        assert min(done.values()) > 40, f"a transfer was too short to prove anything: {done}"
        for *_, proc in runs:
            assert proc.proc.poll() is None, proc.output[-3000:]
            clean(proc.output)
            assert proc.output.count("connected:") == 1, proc.output[-3000:]
    finally:
        for _, _, name, _, proc in runs:
            proc.stop()
            print(proc.output[-3000:])
            d.remove_container(name)


# -- huge roots ------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_the_container_root_as_the_container_path(py_container: str, tmp_path: Path) -> None:
    """``--container-path /`` (the whole container: /usr, /proc with its links and files
    that announce absurd sizes), previewed with --dry-run: the plan is made, nothing crashes
    on size, nothing is written."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    proc = sync(workdir, py_container, "--container-path", "/", "--no-watch", "--dry-run")
    assert proc.finish(240) == 0, proc.output[-3000:]
    clean(proc.output)
    found = re.search(r"initial sync plan: download (\d+)", proc.output)
    assert found is not None and int(found.group(1)) > 5000, proc.output[-3000:]
    assert "usr/lib/python3" in proc.output
    assert [p.name for p in workdir.iterdir()] in ([], [".devspace"]), "a dry run wrote files"

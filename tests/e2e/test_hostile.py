"""A hostile container: real ``podsync sync`` against the hostile agent double in a real container.

How the double gets in (no hook in podsync): podsync starts the agent installed at
``bootstrap.probe.agent_path()`` (a name carrying the hash of this podsync's agent bundle)
when it is present. The test installs its own bundle there before podsync runs: the double
(tests/hostile/agent.py) as ``__main__.py`` next to the shipped ``podsync`` packages, whose
wire code it speaks. That is exactly what a hostile container can do to podsync anyway (the
container owns /tmp/.podsync), so the seam gives a test nothing a real attacker lacks, and
production code has no switch that could weaken it.

For every mode: podsync ends within a deadline with exit 0 (the hostile data was refused
path by path) or 1 and a one-line error, never a traceback; its RSS stays under RSS_LIMIT
while it runs; temp files in the local folder never exceed the announced size plus a chunk;
nothing outside the local folder or inside its excluded folder is created, changed or deleted.
Flooding modes run in watch mode: the flood must neither fill the terminal nor sync.log, and
when the agent goes, podsync says that it reconnects.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.harness import SyncProcess
from tests.support import docker as d
from tests.support.wait import wait_until

pytestmark = pytest.mark.docker

AGENT = Path(__file__).resolve().parents[1] / "hostile" / "agent.py"
MIB = 1 << 20
RSS_LIMIT = 300 * MIB
CHUNK = MIB
#: podsync must be done with any mode within this long (liveness is set to LIVENESS s).
DEADLINE = 45.0
LIVENESS = "3"

ERROR = "error"  # exit 1 with a one-line error
CLEAN = "clean"  # exit 0: the hostile entries were refused path by path
RECONNECT = "reconnect"  # watch mode: a flood, then the agent exits; podsync says it reconnects
#: What one connection of a flooding agent may add to sync.log and to the terminal.
LOG_LIMIT = 8 * MIB
LINES_LIMIT = 6000

#: mode -> (expected outcome, text the error must contain, largest announced size)
MODES: dict[str, tuple[str, str, int]] = {
    "escape-dotdot": (ERROR, "", 5),
    "escape-absolute": (ERROR, "", 5),
    "escape-item": (ERROR, "component", 5),
    "escape-symlink": (CLEAN, "leaves the sync folder; not created", 5),
    "escape-link": (CLEAN, "leaves the sync folder; not created", 5),
    "excluded": (CLEAN, "", 5),
    "endless-chunks": (ERROR, "more than the 5 bytes", 5),
    "oversize-chunks": (ERROR, "more than the 2097152 bytes", 2 * MIB),
    "empty-chunks": (ERROR, "empty chunk", 5),
    "zlib-bomb-chunk": (ERROR, "inflates to more than", 1 << 30),
    "zlib-bomb-listing": (ERROR, "inflates to more than", 0),
    "bad-zlib-chunk": (ERROR, "not valid zlib data", 5),
    "mtime-huge": (ERROR, "malformed listing", 5),
    "mtime-negative": (ERROR, "malformed listing", 5),
    "mtime-extreme": (CLEAN, "", 5),
    "bad-mode": (ERROR, "malformed listing", 5),
    "silent": (ERROR, "no progress on 'hello'", 0),
    "ping-only": (ERROR, "no progress on 'scan'", 0),
    "no-hello": (ERROR, "no progress on 'hello'", 0),
    "garbage": (ERROR, "", 0),
    "garbage-preamble": (ERROR, "did not start the podsync protocol", 0),
    "oversized-header": (ERROR, "oversized frame", 0),
    "endless-listing": (ERROR, "too large", 0),
    "repeated-listing": (ERROR, "empty piece", 0),
    "warn-flood": (RECONNECT, "not showing more", 0),
    "hints-flood": (RECONNECT, "", 0),
    "stderr-flood": (RECONNECT, "", 0),
}


def hostile_bundle() -> bytes:
    """A zipapp: the double as ``__main__.py``, and the shipped packages it imports."""
    from podsync.bootstrap.zipapp import _sources

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__main__.py", AGENT.read_bytes())
        for name, data in _sources():
            if name.startswith("podsync/"):
                archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hostile_container() -> Iterator[str]:
    """One container for every mode, the double installed where podsync looks for its agent."""
    from tests.conftest import _require_docker

    from podsync.bootstrap.probe import AGENT_DIR, agent_path

    _require_docker()
    name = d.start_container(d.PY_IMAGE, workdir="/app")
    try:
        path = shlex.quote(agent_path())
        script = f"mkdir -p {AGENT_DIR} /app && cat > {path}"
        result = d.docker("exec", "-i", name, "sh", "-c", script, stdin=hostile_bundle())
        assert result.returncode == 0, result.stderr.decode()
        # The zip bomb takes seconds to build: built once, before any mode's clock runs.
        result = d.docker("exec", name, "python3", agent_path(), "bomb")
        assert result.returncode == 0, result.stderr.decode()
        yield name
    finally:
        d.remove_container(name)


def tree(top: Path, skip: Path) -> dict[str, tuple[str, int, str]]:
    """Everything under ``top`` except ``skip`` (the synced part of the local folder): kind,
    mode bits and content hash (or link target) per path."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [n for n in dirnames if here / n != skip]
        for name in dirnames + filenames:
            path = here / name
            st = path.lstat()
            if path.is_symlink():
                out[str(path)] = ("link", st.st_mode, os.readlink(path))
            elif path.is_dir():
                out[str(path)] = ("dir", st.st_mode, "")
            else:
                out[str(path)] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


class Monitor:
    """Samples podsync's RSS and the temp files in the local folder while it runs."""

    def __init__(self, pid: int, root: Path) -> None:
        self.pid = pid
        self.root = root
        self.max_rss = 0
        self.max_temp = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_rss = max(self.max_rss, self._rss())
            self.max_temp = max(self.max_temp, self._temp_bytes())
            self.samples += 1
            self._stop.wait(0.02)

    def _rss(self) -> int:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _temp_bytes(self) -> int:
        biggest = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if name.startswith(".podsync-tmp-"):
                    with contextlib.suppress(OSError):
                        biggest = max(biggest, os.lstat(os.path.join(dirpath, name)).st_size)
        return biggest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_hostile_agent(
    mode: str,
    hostile_container: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected, needle, announced = MODES[mode]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel.txt").write_text("must stay\n")
    project = tmp_path / "project"
    (project / "skip").mkdir(parents=True)
    (project / "skip" / "keep.txt").write_text("excluded: never touched\n")
    settings = {"mode": mode, "outside": str(outside)}
    script = "mkdir -p /app && rm -rf /app/* && cat > /tmp/.podsync/hostile-mode"
    done = d.docker(
        "exec", "-i", hostile_container, "sh", "-c", script, stdin=json.dumps(settings).encode()
    )
    assert done.returncode == 0, done.stderr.decode()
    before = tree(tmp_path, skip=project)
    skipped = tree(project / "skip", skip=project / "skip" / "none")

    monkeypatch.setenv("PODSYNC_LIVENESS_SECONDS", LIVENESS)
    args = ["--local-path", str(project), "--docker", hostile_container, "--exclude", "skip/"]
    watch = expected == RECONNECT
    proc = SyncProcess(args if watch else [*args, "--no-watch"], cwd=project)
    monitor = Monitor(proc.proc.pid, project)
    started = time.monotonic()
    try:
        wait_until(
            lambda: proc.proc.poll() is not None or (watch and "connection lost" in proc.output),
            DEADLINE,
            interval=0.05,
            message=f"podsync still runs against mode {mode}; output:\n{proc.output}",
        )
    finally:
        proc.stop()
        monitor.stop()
    seconds = time.monotonic() - started
    code = proc.proc.returncode
    output = proc.output
    print(
        f"{mode}: exit {code} in {seconds:.1f} s, max RSS {monitor.max_rss // MIB} MiB,"
        f" max temp {monitor.max_temp} bytes ({monitor.samples} samples)\n{output}"
    )

    assert "Traceback" not in output and "Error:" not in output.replace("podsync:", ""), output
    assert code in (0, 1), output
    shown = output.replace("\n", "")
    assert shown.isprintable(), f"control characters reached the terminal: {shown!r}"
    log = project / ".devspace" / "logs" / "sync.log"
    assert log.stat().st_size < LOG_LIMIT, f"sync.log grew to {log.stat().st_size} bytes"
    assert len(proc.lines) < LINES_LIMIT, f"{len(proc.lines)} lines of output"
    if expected == RECONNECT:
        assert "reconnecting in" in output, output
        assert needle in output, output
    elif expected == ERROR:
        assert code == 1, output
        errors = [line for line in output.splitlines() if line.startswith("podsync: ")]
        assert len(errors) == 1, output
        assert needle in errors[0], output
    else:
        assert code == 0, output
        assert needle in output, output
    assert monitor.samples > 0
    assert monitor.max_rss < RSS_LIMIT, f"RSS reached {monitor.max_rss // MIB} MiB"
    assert monitor.max_temp <= min(announced, 1 << 40) + CHUNK
    assert tree(tmp_path, skip=project) == before, "something outside the local folder changed"
    assert tree(project / "skip", skip=project / "skip" / "none") == skipped
    assert not (tmp_path / "escaped.txt").exists()
    leaked = [p for p in project.rglob("*") if p.is_symlink() and not _inside(p, project)]
    assert not leaked, f"links leaving the local folder were created: {leaked}"


def _inside(link: Path, root: Path) -> bool:
    target = (link.parent / os.readlink(link)).resolve()
    return target == root.resolve() or root.resolve() in target.parents


def test_every_mode_of_the_double_is_tested() -> None:
    """The double's modes and this file's table are the same list."""
    from tests.hostile import agent

    assert set(agent.MODES) == set(MODES)

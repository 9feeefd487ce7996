"""Fault injection on real containers, both agents: ``docker pause``, ``docker kill`` +
``docker start``, SIGINT/SIGTERM in every state, a full local disk, a read-only local folder,
and both sides emptied while watching.

Each test asserts: no hang (every wait has a deadline), a one-line message, a reconnect in
watch mode (never an exit) or a clean exit, no partial or half-written file on either side,
the old file intact after a cut transfer, no traceback, and no agent process left in the
container after podsync exits.

Transfers are made long with small files and a bandwidth limit, or (for the cases without a
limit) with a container whose CPU is capped by ``docker update --cpus``: podsync itself then
runs unthrottled while the agent crawls. Liveness is lowered with PODSYNC_LIVENESS_SECONDS so
a stall is noticed in seconds (the product default, 20 s, keeps detection under 30 s).
Mounting (tmpfs, read-only bind) needs root; those tests skip without it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.e2e.harness import DockerFar, SyncProcess, read_local
from tests.support import docker as d
from tests.support.wait import wait_until

KIB = 1024
MIB = 1024 * KIB
#: Stall detection for these tests (seconds); the product default is 20.
LIVENESS = "4"
#: podsync must be gone this long after SIGINT/SIGTERM (the promise is 2 s; the rest absorbs
#: a loaded machine).
EXIT_DEADLINE = 3.0
#: CPU share of a "slow" container (a transfer without a bandwidth limit that lasts seconds),
#: by agent (the shell agent's poller and tar need more to get going at all).
SLOW_CPUS = {"python": "0.01", "shell": "0.04"}
#: ... and back to normal (``--cpus 0`` does not lift a limit).
FULL_CPUS = str(os.cpu_count() or 1)
#: What podsync says when a connection is lost; the reason follows on the same line.
LOST = re.compile(r"connection lost: [^\n]+; reconnecting in [\d.]+ s")
TRACEBACK = ("Traceback", "was never retrieved", "Event loop is closed", "Exception ignored")


@dataclass
class Agent:
    kind: str  # "python" or "shell"
    container: str
    far: DockerFar


@pytest.fixture(params=["python", "shell"])
def agent(request: pytest.FixtureRequest) -> Iterator[Agent]:
    """A fresh container of the image that makes podsync use this agent."""
    from tests.conftest import _require_docker

    _require_docker()
    image = d.PY_IMAGE if request.param == "python" else d.BUSYBOX_IMAGE
    name = d.start_container(image)
    try:
        yield Agent(request.param, name, DockerFar(name))
    finally:
        d.docker("unpause", name)
        d.remove_container(name)


@pytest.fixture(autouse=True)
def fast_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODSYNC_LIVENESS_SECONDS", LIVENESS)


# -- helpers ----------------------------------------------------------------------------------
def start(agent: Agent, workdir: Path, running: list[SyncProcess], *extra: str) -> SyncProcess:
    proc = SyncProcess(["--local-path", str(workdir), "--docker", agent.container, *extra], workdir)
    running.append(proc)
    return proc


def docker_ok(*args: str) -> None:
    result = d.docker(*args)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr.decode()}"


def far_stage(agent: Agent, data: bytes) -> None:
    """Put ``data`` aside in the container (outside the synced folder)."""
    script = "cat > /tmp/podsync-test-new"
    result = d.docker("exec", "-i", agent.container, "sh", "-c", script, stdin=data)
    assert result.returncode == 0, result.stderr.decode()


def far_commit(agent: Agent, rel: str) -> None:
    """Rename the staged data into place (the change is atomic)."""
    docker_ok("exec", agent.container, "mv", "/tmp/podsync-test-new", f"{agent.far.root}/{rel}")


def far_put(agent: Agent, rel: str, data: bytes) -> None:
    """Replace a container file atomically (written aside, then renamed into place)."""
    far_stage(agent, data)
    far_commit(agent, rel)


def slow_down(agent: Agent) -> None:
    docker_ok("update", "--cpus", SLOW_CPUS[agent.kind], agent.container)


def pause(agent: Agent) -> None:
    """``docker pause``; retried for a while: freezing a CPU-capped container can fail
    while its tasks are throttled ("unable to freeze")."""
    errors: list[str] = []

    def paused() -> bool:
        result = d.docker("pause", agent.container)
        errors.append(result.stderr.decode().strip())
        return result.returncode == 0

    wait_until(paused, 20, interval=0.05, message=f"docker pause failed: {errors[-1:]}")


def local_put(workdir: Path, rel: str, data: bytes) -> None:
    staged = workdir.parent / f"{uuid.uuid4().hex}.staged"
    staged.write_bytes(data)
    os.replace(staged, workdir / rel)


def far_temp_bytes(agent: Agent) -> int:
    """Bytes in podsync's temp/staging files in the container."""
    out = agent.far.sh(
        "find /app -path '*/.podsync-*' -type f -exec stat -c %s {} + 2>/dev/null || true"
    )
    return sum(int(x) for x in out.split() if x.isdigit())


def far_leftovers(agent: Agent) -> str:
    return agent.far.sh("find /app -name '.podsync-*' 2>/dev/null || true")


def local_temps(workdir: Path) -> list[Path]:
    return [
        p for p in workdir.rglob(".podsync-*") if ".devspace" not in p.relative_to(workdir).parts
    ]


def local_temp_bytes(workdir: Path) -> int:
    total = 0
    for p in local_temps(workdir):
        with contextlib.suppress(OSError):
            total += p.stat().st_size if p.is_file() else 0
    return total


def container_processes(container: str) -> list[str]:
    """Every process in the container but init and our own ``ps`` (podsync runs nothing
    else there: what is left is an agent, a poll loop, a tar, or one of their children)."""
    result = d.docker("exec", container, "ps", "-o", "pid,args")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()[1:]
    return [ln for ln in lines if ln.split()[0] != "1" and "ps -o pid,args" not in ln]


def assert_no_agent_left(container: str) -> None:
    wait_until(
        lambda: container_processes(container) == [],
        15,
        interval=0.2,
        message=f"processes left in the container: {container_processes(container)}",
    )


def assert_clean_output(proc: SyncProcess) -> None:
    for marker in TRACEBACK:
        assert marker not in proc.output, f"{marker!r} in the output:\n{proc.output}"


def wait_lost(proc: SyncProcess, after: int, timeout: float = 30.0) -> str:
    """The first 'connection lost' line printed after line ``after``; asserts it comes in
    time and that podsync is still running (a reconnect, never an exit)."""

    def found() -> str | None:
        for line in proc.lines[after:]:
            if LOST.search(line):
                return line
        return None

    wait_until(
        lambda: found() is not None or proc.proc.poll() is not None,
        timeout,
        interval=0.05,
        message=f"no 'connection lost' line within {timeout:g} s:\n{proc.output}",
    )
    line = found()
    assert line is not None, f"podsync exited ({proc.proc.returncode}):\n{proc.output}"
    assert proc.proc.poll() is None, proc.output
    return line


def destination(agent: Agent, workdir: Path, direction: str, rel: str) -> bytes | None:
    return read_local(workdir, rel) if direction == "down" else agent.far.read(rel)


def begin_transfer(
    agent: Agent, workdir: Path, direction: str, data: bytes, slow: bool = False
) -> None:
    """Change big.bin on the source side and wait until its transfer is under way;
    ``slow``: with the container's CPU capped first."""
    if direction == "up":
        if slow:
            slow_down(agent)
        local_put(workdir, "big.bin", data)
        wait_until(lambda: far_temp_bytes(agent) > 64 * KIB, 30, interval=0.05,
                   message="the upload never began")  # fmt: skip
    else:
        far_stage(agent, data)
        if slow:
            slow_down(agent)
        far_commit(agent, "big.bin")
        wait_until(lambda: local_temp_bytes(workdir) > 64 * KIB, 30, interval=0.02,
                   message="the download never began")  # fmt: skip


def synced_start(
    agent: Agent, workdir: Path, running: list[SyncProcess], old: bytes, *extra: str
) -> SyncProcess:
    """podsync watching, with big.bin = ``old`` on both sides."""
    (workdir / "big.bin").write_bytes(old)
    proc = start(agent, workdir, running, *extra)
    proc.wait_watching()
    assert agent.far.read("big.bin") == old
    return proc


def limit_flags(direction: str, kib: int) -> list[str]:
    flag = "--bandwidth-upload" if direction == "up" else "--bandwidth-download"
    return [flag, str(kib)]


def wait_complete(
    agent: Agent, workdir: Path, direction: str, old: bytes, new: bytes, proc: SyncProcess
) -> None:
    """Until the destination holds ``new``; never anything but ``old`` or ``new`` there."""
    seen: list[int] = []

    def done() -> bool:
        now = destination(agent, workdir, direction, "big.bin")
        if now not in (old, new):
            seen.append(-1 if now is None else len(now))
        return now == new

    wait_until(done, 90, interval=0.1, message=f"the transfer never completed:\n{proc.output}")
    assert not seen, f"a partial file was visible at the destination: sizes {seen}"


def assert_no_partials(agent: Agent, workdir: Path) -> None:
    wait_until(lambda: far_leftovers(agent) == "", 15, interval=0.2,
               message=f"temp files left in the container: {far_leftovers(agent)}")  # fmt: skip
    wait_until(lambda: local_temps(workdir) == [], 15, interval=0.2,
               message=f"temp files left locally: {local_temps(workdir)}")  # fmt: skip


def stop_cleanly(proc: SyncProcess, sig: int = signal.SIGINT) -> float:
    """Signal podsync; the seconds it took to exit (asserted under EXIT_DEADLINE), exit 0."""
    began = time.monotonic()
    proc.proc.send_signal(sig)
    try:
        proc.proc.wait(EXIT_DEADLINE + 10)
    except subprocess.TimeoutExpired:
        proc.proc.kill()
        raise AssertionError(f"podsync did not stop on {sig!r}:\n{proc.output}") from None
    took = time.monotonic() - began
    proc.stop()  # joins the output reader
    assert took < EXIT_DEADLINE, f"podsync took {took:.1f} s to stop:\n{proc.output}"
    assert proc.proc.returncode == 0, proc.output
    assert_clean_output(proc)
    return took


# -- 1. docker pause --------------------------------------------------------------------------
@pytest.mark.parametrize("limited", [False, True], ids=["slow-container", "bandwidth"])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_pause_mid_transfer_is_detected_and_the_sync_resumes(
    agent: Agent, workdir: Path, running: list[SyncProcess], direction: str, limited: bool
) -> None:
    old = os.urandom(64 * KIB)
    new = os.urandom(2 * MIB if limited else 8 * MIB)
    extra = limit_flags(direction, 512) if limited else []
    proc = synced_start(agent, workdir, running, old, *extra)
    begin_transfer(agent, workdir, direction, new, slow=not limited)
    mark = len(proc.lines)
    pause(agent)
    paused_at = time.monotonic()
    line = wait_lost(proc, mark, timeout=30)
    assert time.monotonic() - paused_at < 30
    assert re.search(r"paused|stalled|no progress|took in nothing", line), line
    if direction == "down":
        # Old, or new when what the container had already sent sufficed (the shell agent's
        # tar does not wait for us: pipes and the Docker engine buffer it), never partial.
        assert read_local(workdir, "big.bin") in (old, new), "the cut download damaged the file"
    docker_ok("unpause", agent.container)
    docker_ok("update", "--cpus", FULL_CPUS, agent.container)
    wait_complete(agent, workdir, direction, old, new, proc)
    assert proc.proc.poll() is None, proc.output
    assert_no_partials(agent, workdir)
    stop_cleanly(proc)
    assert_no_agent_left(agent.container)


# -- 2. docker kill + docker start ------------------------------------------------------------
@pytest.mark.parametrize("direction", ["up", "down"])
def test_restart_mid_transfer_reconnects_and_completes(
    agent: Agent, workdir: Path, running: list[SyncProcess], direction: str
) -> None:
    old = os.urandom(64 * KIB)
    new = os.urandom(2 * MIB)
    proc = synced_start(agent, workdir, running, old, *limit_flags(direction, 512))
    begin_transfer(agent, workdir, direction, new)
    mark = len(proc.lines)
    docker_ok("kill", agent.container)
    if direction == "down":
        assert read_local(workdir, "big.bin") == old
    docker_ok("start", agent.container)
    line = wait_lost(proc, mark, timeout=30)
    if direction == "up":
        assert "stopped (killed?)" in line, line
    wait_complete(agent, workdir, direction, old, new, proc)
    assert proc.proc.poll() is None, proc.output
    assert_no_partials(agent, workdir)
    stop_cleanly(proc, signal.SIGTERM)
    assert_no_agent_left(agent.container)


# -- 3. SIGINT / SIGTERM in every state -------------------------------------------------------
#: Every state, each signal at least twice (the two take the same path: STOP_SIGNALS).
STATES = [
    ("upload", signal.SIGINT),
    ("download", signal.SIGTERM),
    ("throttled-up", signal.SIGTERM),
    ("throttled-down", signal.SIGINT),
    ("paused", signal.SIGINT),
    ("paused", signal.SIGTERM),
    ("reconnecting", signal.SIGINT),
]


@pytest.mark.parametrize(
    ("state", "sig"), STATES, ids=[f"{st}-{signal.Signals(sg).name}" for st, sg in STATES]
)
def test_stop_signal_in_every_state_exits_fast_and_clean(
    agent: Agent, workdir: Path, running: list[SyncProcess], state: str, sig: int
) -> None:
    slow = state in ("upload", "download")
    old = os.urandom(64 * KIB)
    # Unthrottled transfers must last long enough to be caught under way (8 MiB took 2 s
    # into a CPU-capped busybox container: missed once under load).
    new = os.urandom(24 * MIB if slow else 2 * MIB)
    direction = "down" if state.endswith("down") or state == "download" else "up"
    limited = state.startswith("throttled") or state in ("paused", "reconnecting")
    extra = limit_flags(direction, 256) if limited else []
    proc = synced_start(agent, workdir, running, old, *extra)
    begin_transfer(agent, workdir, direction, new, slow=slow)
    if state in ("paused", "reconnecting"):
        mark = len(proc.lines)
        pause(agent)
        if state == "reconnecting":  # the stall was noticed; retrying a paused container
            wait_lost(proc, mark)
    stop_cleanly(proc, sig)
    if direction == "down":
        assert read_local(workdir, "big.bin") in (old, new)
    d.docker("unpause", agent.container)
    docker_ok("update", "--cpus", FULL_CPUS, agent.container)
    assert agent.far.read("big.bin") in (old, new), "a partial file in the container"
    assert_no_partials(agent, workdir)
    assert_no_agent_left(agent.container)


# -- 4. a full local disk ---------------------------------------------------------------------
@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points made by a test, unmounted at teardown (innermost first)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind needs root")
    made: list[Path] = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def mount(mounts: list[Path], *argv: str) -> None:
    result = subprocess.run(["mount", *argv], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount: {result.stderr.decode().strip()}")
    mounts.append(Path(argv[-1]))


def test_local_disk_full_keeps_the_old_file(
    agent: Agent, workdir: Path, running: list[SyncProcess], mounts: list[Path]
) -> None:
    mount(mounts, "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(workdir))
    old = os.urandom(128 * KIB)
    proc = synced_start(agent, workdir, running, old)
    mark = len(proc.lines)
    far_put(agent, "big.bin", os.urandom(3 * MIB))  # does not fit in the 1 MiB folder
    problem = re.compile(r"problem: big\.bin: [^\n]+")
    wait_until(
        lambda: any(problem.search(x) for x in proc.lines[mark:]),
        30,
        message=f"no problem reported for the download that cannot fit:\n{proc.output}",
    )
    assert read_local(workdir, "big.bin") == old, "the failed download damaged the old file"
    wait_until(lambda: local_temps(workdir) == [], 10, message=f"{local_temps(workdir)}")
    assert proc.proc.poll() is None, proc.output
    # The sync goes on: a change that fits comes through.
    agent.far.write("small.txt", b"fits")
    wait_until(lambda: read_local(workdir, "small.txt") == b"fits", 20, message=proc.output)
    assert read_local(workdir, "big.bin") == old
    stop_cleanly(proc)
    assert_no_agent_left(agent.container)


# -- 5. a read-only local folder --------------------------------------------------------------
def test_read_only_local_file_changed_in_the_container_is_reported_and_kept(
    agent: Agent, workdir: Path, running: list[SyncProcess], mounts: list[Path]
) -> None:
    """A read-only bind mount (chmod does not stop root): the container's edit cannot land
    locally; it is reported, the container keeps its version, the local one is unchanged."""
    ro = workdir / "ro"
    ro.mkdir()
    (ro / "f.txt").write_bytes(b"local v1\n")
    proc = start(agent, workdir, running)
    proc.wait_watching()
    assert agent.far.read("ro/f.txt") == b"local v1\n"
    mount(mounts, "--bind", str(ro), str(ro))
    mount(mounts, "-o", "remount,ro,bind", str(ro))
    mounts.pop()  # one unmount undoes both
    mark = len(proc.lines)
    far_put(agent, "ro/f.txt", b"container v2\n")
    wait_until(
        lambda: any(re.search(r"ro/f\.txt: [^\n]+", x) for x in proc.lines[mark:]),
        30,
        message=f"the file that cannot be written was not reported:\n{proc.output}",
    )
    agent.far.write("ok.txt", b"goes on")
    wait_until(lambda: read_local(workdir, "ok.txt") == b"goes on", 20, message=proc.output)
    assert (ro / "f.txt").read_bytes() == b"local v1\n"
    assert agent.far.read("ro/f.txt") == b"container v2\n", "the container's edit was lost"
    assert proc.proc.poll() is None, proc.output
    stop_cleanly(proc)
    assert_no_agent_left(agent.container)


# -- 6. both sides emptied while watching -----------------------------------------------------
def test_both_sides_emptied_while_watching_halts_with_one_line(
    agent: Agent, workdir: Path, running: list[SyncProcess]
) -> None:
    for i in range(12):
        sub = workdir / f"d{i % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.txt").write_text(f"file {i}\n")
    proc = start(agent, workdir, running)
    proc.wait_watching()
    wait_until(lambda: agent.far.exists("d2/f11.txt"), 10)
    agent.far.sh("rm -rf /app/* /app/.[!.]* 2>/dev/null; true")
    subprocess.run(["sh", "-c", f"rm -rf {shlex.quote(str(workdir))}/d*"], check=True)
    # README: a side that suddenly looks emptied never empties the other: podsync halts with
    # one line (the local guard, or the container's, whichever sees its side first).
    code = proc.finish(30)
    assert code == 1, proc.output
    halted = [x for x in proc.lines if "halted:" in x]
    assert len(halted) == 1 and re.search(r"looks empt|emptied|vanish", halted[0]), proc.output
    assert_clean_output(proc)
    assert not any((workdir / f"d{i}").exists() for i in range(3)), "files came back locally"
    assert agent.far.listing() == set(), "files came back in the container"
    assert local_temps(workdir) == []
    assert_no_agent_left(agent.container)

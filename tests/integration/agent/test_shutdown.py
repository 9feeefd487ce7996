"""SIGINT/SIGTERM end `podsync sync` quickly in every state (issue 8, defect 5 and
"Shutdown"): mid-upload, mid-download of 600 MB, throttled both ways, and with the container
paused. Each run asserts: exit 0 well within SHUTDOWN_BOUND (the figure is printed), no
traceback or asyncio complaint in the output, no partial file on either side, and no agent
left in the container (a paused one ends once unpaused: it finds its input closed).

Real CLI processes and real containers. The bound is a deadline, not a benchmark.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.harness import SyncProcess
from tests.integration.agent.agent_helpers import agent_pids_in, temps_in
from tests.support import docker as d
from tests.support.wait import wait_until

pytestmark = pytest.mark.docker
#: The issue asks for 2 s; the deadline leaves room for a loaded CI machine.
SHUTDOWN_BOUND = 5.0
MIB = 1 << 20
NOISE = ("Traceback", "was never retrieved", "Event loop is closed", "Task was destroyed")


@pytest.fixture
def container(py_container: str) -> Iterator[str]:
    yield py_container
    d.docker("unpause", py_container)


def start(workdir: Path, container: str, *extra: str) -> SyncProcess:
    return SyncProcess(["--local-path", str(workdir), "--docker", container, *extra], workdir)


def stop_and_time(proc: SyncProcess, sig: int) -> float:
    started = time.monotonic()
    code = proc.stop(sig, timeout=30)
    took = time.monotonic() - started
    print(f"exit after {signal.Signals(sig).name}: {took:.2f} s (code {code})")
    assert code == 0, proc.output
    for noise in NOISE:
        assert noise not in proc.output, proc.output
    return took


def local_temps(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".podsync-tmp-*")]


def container_file_size(container: str, path: str) -> int:
    out = d.docker("exec", container, "sh", "-c", f"cat {path}* 2>/dev/null | wc -c")
    text = out.stdout.decode().strip()
    return int(text) if text.isdigit() else 0


def temp_bytes(container: str) -> int:
    script = "find /app -name '.podsync-*' -type f -exec stat -c %s {} + 2>/dev/null || true"
    out = d.docker("exec", container, "sh", "-c", script).stdout.decode()
    return sum(int(x) for x in out.split() if x.isdigit())


def assert_nothing_left(workdir: Path, container: str) -> None:
    assert local_temps(workdir) == [], "a partial file was left in the local folder"
    wait_until(lambda: not agent_pids_in(container), 10, message="agent left in the container")
    wait_until(lambda: temps_in(container) == "", 10, message="partial file left in /app")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_stop_in_the_middle_of_a_throttled_upload(container: str, tmp_path: Path, sig: int) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    proc = start(workdir, container, "--bandwidth-upload", "4096")
    try:
        proc.wait_watching()
        (workdir / "big.bin").write_bytes(os.urandom(64 * MIB))
        wait_until(lambda: temp_bytes(container) > 2 * MIB, 30, message=proc.output)
        assert stop_and_time(proc, sig) < SHUTDOWN_BOUND
    finally:
        proc.stop()
    assert_nothing_left(workdir, container)


def test_stop_in_the_middle_of_a_600_mb_download(container: str, tmp_path: Path) -> None:
    """Defect 5: was 24-25 s and two asyncio tracebacks."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    d.docker_exec(container, ["sh", "-c", "head -c 600000000 /dev/zero > /app/big.bin"])
    proc = start(workdir, container, "--download-on-initial-sync")
    try:
        wait_until(
            lambda: sum(p.stat().st_size for p in workdir.glob(".podsync-tmp-*")) > 20 * MIB,
            60,
            interval=0.02,
            message=f"the download never began:\n{proc.output}",
        )
        assert stop_and_time(proc, signal.SIGINT) < SHUTDOWN_BOUND
    finally:
        proc.stop()
    assert not (workdir / "big.bin").exists() or (workdir / "big.bin").stat().st_size == 600000000
    assert_nothing_left(workdir, container)


def test_stop_in_the_middle_of_a_throttled_download(container: str, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    d.docker_exec(container, ["sh", "-c", "head -c 40000000 /dev/urandom > /app/big.bin"])
    proc = start(workdir, container, "--download-on-initial-sync", "--bandwidth-download", "2048")
    try:
        wait_until(
            lambda: sum(p.stat().st_size for p in workdir.glob(".podsync-tmp-*")) > 2 * MIB,
            60,
            interval=0.05,
            message=f"the download never began:\n{proc.output}",
        )
        assert stop_and_time(proc, signal.SIGINT) < SHUTDOWN_BOUND
    finally:
        proc.stop()
    assert not (workdir / "big.bin").exists()
    assert_nothing_left(workdir, container)


def test_stop_with_the_container_paused_mid_upload(container: str, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    proc = start(workdir, container, "--bandwidth-upload", "4096")
    try:
        proc.wait_watching()
        (workdir / "big.bin").write_bytes(os.urandom(64 * MIB))
        wait_until(lambda: temp_bytes(container) > 2 * MIB, 30, message=proc.output)
        assert d.docker("pause", container).returncode == 0
        time.sleep(0.5)  # let the upload hit the paused pipe (nothing to poll for)
        took = stop_and_time(proc, signal.SIGINT)
        assert took < SHUTDOWN_BOUND
        # A second signal after the first changes nothing (here: the process is gone).
    finally:
        d.docker("unpause", container)
        proc.stop()
    assert_nothing_left(workdir, container)


def test_a_second_ctrl_c_makes_nothing_worse(container: str, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    d.docker_exec(container, ["sh", "-c", "head -c 600000000 /dev/zero > /app/big.bin"])
    proc = start(workdir, container, "--download-on-initial-sync", "--bandwidth-download", "20480")
    try:
        wait_until(
            lambda: any(workdir.glob(".podsync-tmp-*")),
            60,
            interval=0.02,
            message=f"the download never began:\n{proc.output}",
        )
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.proc.send_signal(signal.SIGINT)
        code = proc.proc.wait(30)
        took = time.monotonic() - started
        print(f"exit after two SIGINTs: {took:.2f} s (code {code})")
        assert took < SHUTDOWN_BOUND
        assert code == 0, proc.output
    finally:
        proc.stop()
    for noise in NOISE:
        assert noise not in proc.output, proc.output
    assert_nothing_left(workdir, container)

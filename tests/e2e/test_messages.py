"""What podsync prints, end to end on real targets: each message once, in the right words."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.conftest import Target
from tests.e2e.harness import DockerFar, SyncProcess
from tests.e2e.test_conflicts import start
from tests.support import docker as d
from tests.support.docker import docker_env
from tests.support.wait import wait_until


def _dry_run(target: Target, workdir: Path) -> subprocess.CompletedProcess[str]:
    args = ["sync", "--local-path", str(workdir), *target.args, "--dry-run"]
    return subprocess.run(
        [sys.executable, "-m", "podsync", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env=docker_env(),
        check=False,
    )


def test_a_halt_is_printed_once(target: Target, workdir: Path, running: list[SyncProcess]) -> None:
    for i in range(30):
        (workdir / f"f{i}.txt").write_text(str(i))
    proc = start(target, workdir, running)
    proc.wait_watching()
    target.far.sh(f"rm -rf {target.far.root}/*")
    assert proc.finish(30) == 1, proc.output
    said = [line for line in proc.lines if "looks empty" in line]
    assert len(said) == 1, proc.output
    assert "halted:" in said[0]
    assert len(list(workdir.glob("f*.txt"))) == 30


def test_dry_run_plan_is_the_output_and_diagnostics_stay_on_stderr(
    target: Target, workdir: Path
) -> None:
    (workdir / "local-only.txt").write_text("upload me")
    target.far.write("remote-only.txt", b"keep me")
    done = _dry_run(target, workdir)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\s*upload\s+local-only\.txt", done.stdout, re.M), done.stdout
    assert re.search(r"^\S.*plan: ", done.stdout, re.M), done.stdout
    assert "connected:" in done.stderr and "connected:" not in done.stdout
    assert "local-only.txt" not in done.stderr, done.stderr


def test_watch_phase_changes_are_one_short_console_line_per_batch(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    proc = start(target, workdir, running)
    proc.wait_watching()
    watching = len(proc.lines)
    (workdir / "one.txt").write_text("1")
    wait_until(lambda: target.far.read("one.txt") == b"1", 15, message=proc.output)
    proc.wait_for_output("uploaded 1: one.txt", 10)
    target.far.write("from-container.txt", b"c")
    proc.wait_for_output("downloaded 1: from-container.txt", 15)

    before = len(proc.lines)
    for i in range(40):  # a busy tree: a few lines, not forty
        (workdir / f"many{i:02}.txt").write_text(str(i))
    wait_until(lambda: target.far.exists("many39.txt"), 20, message=proc.output)

    def counted() -> int:
        said = [ln for ln in proc.lines[before:] if "uploaded" in ln]
        return sum(int(m.group(1)) for ln in said for m in re.finditer(r"uploaded (\d+):", ln))

    wait_until(lambda: counted() >= 40, 10, message=proc.output)
    batch = [ln for ln in proc.lines[before:] if "uploaded" in ln]
    assert 1 <= len(batch) <= 5, proc.output
    assert all(len(ln) < 160 for ln in proc.lines[watching:]), proc.output
    assert "more)" in proc.output, proc.output


@pytest.mark.docker
@pytest.mark.parametrize("image", [d.PY_IMAGE, d.BUSYBOX_IMAGE], ids=["python", "shell"])
def test_a_container_killed_mid_upload_is_named_as_such(
    image: str, workdir: Path, running: list[SyncProcess]
) -> None:
    """`docker kill` while a file is being uploaded: the line says what happened."""
    from tests.conftest import _require_docker

    _require_docker()
    name = d.start_container(image)
    try:
        (workdir / "big.bin").write_bytes(os.urandom(20 << 20))
        args = ["--local-path", str(workdir), "--docker", name, "--no-watch"]
        proc = SyncProcess([*args, "--bandwidth-upload", "2048"], cwd=workdir)
        running.append(proc)
        far = DockerFar(name)
        wait_until(lambda: ".podsync" in far.sh("ls -a /app"), 30, message=proc.output)
        d.docker("kill", name)
        assert proc.finish(30) == 1, proc.output
        last = proc.lines[-1]
        assert "the container stopped (killed?) during the upload of big.bin" in last, last
        assert "stopped reading" not in proc.output and "input is closed" not in proc.output
        assert "Traceback" not in proc.output
    finally:
        d.remove_container(name)


@pytest.mark.docker
@pytest.mark.parametrize("image", [d.PY_IMAGE, d.BUSYBOX_IMAGE], ids=["python", "shell"])
def test_a_container_killed_mid_download_is_named_as_such(
    image: str, workdir: Path, running: list[SyncProcess]
) -> None:
    """`docker kill` while a file is being downloaded: the line names the container and the
    file, not the stream or the pipe."""
    from tests.conftest import _require_docker

    _require_docker()
    name = d.start_container(image)
    try:
        far = DockerFar(name)
        far.sh("mkdir -p /app && head -c 20000000 /dev/urandom > /app/big.bin")
        args = ["--local-path", str(workdir), "--docker", name, "--no-watch"]
        proc = SyncProcess([*args, "--bandwidth-download", "2048"], cwd=workdir)
        running.append(proc)
        wait_until(lambda: any(workdir.glob(".podsync*")), 30, message=proc.output)
        d.docker("kill", name)
        assert proc.finish(30) == 1, proc.output
        last = proc.lines[-1]
        assert "the container stopped (killed?)" in last and "big.bin" in last, last
        assert "tar stream" not in proc.output and "Traceback" not in proc.output
        assert not (workdir / "big.bin").exists()
    finally:
        d.remove_container(name)

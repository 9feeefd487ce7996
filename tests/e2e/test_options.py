"""`podsync sync` options end to end: bandwidthLimits, --dry-run, containerPath default WORKDIR,
plain progress lines, the sync log and `podsync status sync --json` of a running sync.

Real CLI processes, real containers (every target where the option applies), waits on
conditions with deadlines. `podsync dev` (devspace.yaml localSubPath/containerPath) is not
covered here: it only drives Kubernetes targets, which the Docker suite cannot reach.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.conftest import Target
from tests.e2e.harness import DockerFar, SyncProcess, read_local
from tests.support import docker as d
from tests.support.wait import wait_until

KIB = 1024
#: 2.5 MiB at 256 KiB/s: a 10 s transfer.
BIG = 2560 * KIB
RATE_KIB = 256
DATA_PATH = ("--container-path", "/data/x")
LIMIT_512 = ("--bandwidth-upload", "512")
TEMP_MARKERS = (".podsync-tmp-", ".podsync-stage-")


def start(target: Target, workdir: Path, running: list[SyncProcess], *extra: str) -> SyncProcess:
    proc = SyncProcess(["--local-path", str(workdir), *target.args, *extra], cwd=workdir)
    running.append(proc)
    return proc


def far_size(target: Target, rel: str) -> int | None:
    path = shlex.quote(f"{target.far.root}/{rel}")
    out = target.far.sh(f"stat -c %s {path} 2>/dev/null || true")
    return int(out) if out.isdigit() else None


def far_temp_bytes(target: Target) -> int:
    """Bytes in podsync's temp files and staging folders anywhere in the far folder."""
    names = " -o ".join(f"-path '*/{m}*'" for m in TEMP_MARKERS)
    root = shlex.quote(target.far.root)
    out = target.far.sh(f"find {root} \\( {names} \\) -type f -exec stat -c %s {{}} + || true")
    return sum(int(x) for x in out.split() if x.isdigit())


def local_temp_bytes(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(TEMP_MARKERS) for part in rel.split("/")) and path.is_file():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
    return total


def timed_transfer(
    done: Callable[[], bool], partial: Callable[[], int], timeout: float
) -> tuple[float, list[tuple[float, int]]]:
    """Seconds until ``done()``, with (time, partial bytes) samples taken meanwhile."""
    started = time.monotonic()
    samples: list[tuple[float, int]] = []

    def check() -> bool:
        if done():
            return True
        samples.append((time.monotonic() - started, partial()))
        return False

    wait_until(check, timeout, interval=0.05, message="transfer never completed")
    return time.monotonic() - started, samples


def window_rates(samples: list[tuple[float, int]], window: float = 5.0) -> list[float]:
    """Rates (bytes/s) over every window of >= ``window`` s between two samples that both saw
    the partial file growing (first and last samples excluded: the file may not exist yet or
    may already be renamed into place)."""
    growing = [(t, n) for t, n in samples if n > 0]
    rates = []
    for i, (t0, n0) in enumerate(growing):
        for t1, n1 in growing[i + 1 :]:
            if t1 - t0 >= window:
                rates.append((n1 - n0) / (t1 - t0))
                break
    return rates


def assert_rate(elapsed: float, samples: list[tuple[float, int]], what: str) -> None:
    expected = BIG / (RATE_KIB * KIB)
    assert expected * 0.9 <= elapsed <= expected * 1.1, (
        f"{what}: {BIG} bytes at {RATE_KIB} KiB/s took {elapsed:.2f} s, expected "
        f"{expected:.1f} s +-10%"
    )
    steps = [f"{t:.2f}s:{n // KIB}K" for i, (t, n) in enumerate(samples) if i % 10 == 0]
    rates = window_rates(samples)
    assert rates, f"{what}: the partial file was never seen growing: {' '.join(steps)}"
    for rate in rates:
        assert abs(rate / (RATE_KIB * KIB) - 1) <= 0.10, (
            f"{what}: {rate / KIB:.0f} KiB/s over a 5 s window (limit {RATE_KIB} KiB/s); "
            f"partial file over time: {' '.join(steps)}"
        )


def test_bandwidth_limit_upload(target: Target, workdir: Path, running: list[SyncProcess]) -> None:
    proc = start(target, workdir, running, "--bandwidth-upload", str(RATE_KIB))
    proc.wait_watching()
    data = os.urandom(BIG)  # incompressible: zlib cannot cheat the limit
    staged = workdir.parent / "big.staged"
    staged.write_bytes(data)
    os.replace(staged, workdir / "big.bin")  # appears whole: the clock starts now
    elapsed, samples = timed_transfer(
        lambda: far_size(target, "big.bin") == BIG, lambda: far_temp_bytes(target), 40
    )
    assert target.far.read("big.bin") == data
    assert_rate(elapsed, samples, f"upload to {target.kind}")


def test_bandwidth_limit_download(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    proc = start(target, workdir, running, "--bandwidth-download", str(RATE_KIB))
    proc.wait_watching()
    data = os.urandom(BIG)
    target.far.write("../big.staged", data)  # next to the synced folder, same filesystem
    root = shlex.quote(target.far.root)
    started = time.monotonic()
    target.far.sh(f"mv {root}/../big.staged {root}/big.bin")
    exec_delay = time.monotonic() - started  # the rename happened within this exec

    def done() -> bool:
        path = workdir / "big.bin"
        return path.exists() and path.stat().st_size == BIG

    elapsed, samples = timed_transfer(done, lambda: local_temp_bytes(workdir), 40)
    assert read_local(workdir, "big.bin") == data
    assert_rate(elapsed + exec_delay / 2, samples, f"download from {target.kind}")


def snapshot_local(root: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] == ".devspace" or not path.is_file():
            continue
        st = path.stat()
        out[rel] = (path.read_bytes(), st.st_mtime_ns, st.st_mode)
    return out


def snapshot_far(target: Target) -> str:
    root = shlex.quote(target.far.root)
    return target.far.sh(
        f"cd {root} && find . -mindepth 1 | sort | while read -r p; do "
        f'stat -c "%n %s %Y %a" "$p"; [ -f "$p" ] && md5sum "$p"; done'
    )


def test_dry_run_prints_the_plan_and_changes_nothing(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "local-only.txt").write_text("upload me")
    target.far.write("remote-only.txt", b"delete me")
    (workdir / "older.txt").write_text("local, older")
    os.utime(workdir / "older.txt", (1_000_000_000, 1_000_000_000))
    target.far.write("older.txt", b"container, newer")
    before = (snapshot_local(workdir), snapshot_far(target))
    proc = start(target, workdir, running, "--dry-run", "--no-download-on-initial-sync")
    assert proc.finish(60) == 0, proc.output
    out = proc.output
    assert re.search(r"^\s*upload\s+local-only\.txt", out, re.M), out
    assert re.search(r"^\s*delete remote\s+remote-only\.txt", out, re.M), out
    assert re.search(r"^\s*conflict\s+older\.txt", out, re.M), out
    assert (snapshot_local(workdir), snapshot_far(target)) == before, "--dry-run changed files"
    assert not (workdir / ".devspace" / "trash").exists()


@pytest.mark.docker
@pytest.mark.parametrize("image", [d.PY_IMAGE, d.BUSYBOX_IMAGE], ids=["python", "shell"])
def test_container_path_defaults_to_workdir(
    image: str, workdir: Path, running: list[SyncProcess]
) -> None:
    name = d.start_container(image, workdir="/srv/project")
    try:
        (workdir / "hello.txt").write_text("hello")
        proc = SyncProcess(
            ["--local-path", str(workdir), "--docker", name, "--no-watch"], cwd=workdir
        )
        running.append(proc)
        assert proc.finish(60) == 0, proc.output
        far = DockerFar(name, "/srv/project")
        assert far.read("hello.txt") == b"hello"
        assert DockerFar(name, "/app").read("hello.txt") is None

        explicit = SyncProcess(
            [
                "--local-path",
                str(workdir),
                "--docker",
                name,
                "--no-watch",
                "--container-path",
                "/data/x",
            ],
            cwd=workdir,
        )
        running.append(explicit)
        assert explicit.finish(60) == 0, explicit.output
        assert DockerFar(name, "/data/x").read("hello.txt") == b"hello"
    finally:
        d.remove_container(name)


def test_progress_lines_without_a_tty(
    tmp_path: Path, workdir: Path, running: list[SyncProcess]
) -> None:
    """Progress reporting does not depend on the target: a local one is enough."""
    far = tmp_path / "far"
    far.mkdir()
    for i in range(40):
        (workdir / f"f{i:02}.bin").write_bytes(os.urandom(48 * KIB))
    total = 40 * 48 * KIB  # ~1.9 MiB at 512 KiB/s: ~3.75 s, a progress line every 2 s
    proc = SyncProcess(
        [
            "--local-path",
            str(workdir),
            "--local-target",
            str(far),
            "--no-watch",
            "--bandwidth-upload",
            "512",
        ],
        cwd=workdir,
    )
    running.append(proc)
    assert proc.finish(60) == 0, proc.output
    lines = [ln for ln in proc.lines if re.search(r"initial sync \d+%: \d+/40 files", ln)]
    assert lines, f"no plain progress line in:\n{proc.output}"
    assert all("\x1b" not in ln and "\r" not in ln for ln in proc.lines), "TTY codes in a pipe"
    assert all("ETA" in ln and "/s" in ln for ln in lines), lines
    assert sum(len(p.read_bytes()) for p in far.glob("f*.bin")) == total


def test_sync_log_has_a_line_per_batch(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "first.txt").write_text("1")
    proc = start(target, workdir, running)
    proc.wait_watching()
    log = workdir / ".devspace" / "logs" / "sync.log"
    (workdir / "second.txt").write_text("22")
    wait_until(lambda: target.far.read("second.txt") == b"22", 10)
    target.far.write("third.txt", b"333")
    wait_until(lambda: read_local(workdir, "third.txt") == b"333", 10)

    def batch_lines() -> list[str]:
        text = log.read_text() if log.exists() else ""
        return [ln for ln in text.splitlines() if re.search(r"(uploaded|downloaded) \d+", ln)]

    wait_until(lambda: len(batch_lines()) >= 3, 10, message="batch lines missing in sync.log")
    lines = batch_lines()
    initial = [ln for ln in lines if "initial sync" in ln and "first.txt" in ln]
    up = [ln for ln in lines if re.search(r"uploaded 1 \(2 B\) in \d+ ms: second\.txt", ln)]
    down = [ln for ln in lines if re.search(r"downloaded 1 \(3 B\) in \d+ ms: third\.txt", ln)]
    assert initial and up and down, "\n".join(lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT\S+ ", ln) for ln in lines), lines


def test_status_sync_json_while_running(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "a.txt").write_text("aaaa")
    (workdir / "b.txt").write_text("bb")
    proc = start(target, workdir, running)
    proc.wait_watching()

    def status() -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-m", "podsync", "status", "sync", "--json"],
            cwd=workdir,
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        raw: dict[str, object] = json.loads(result.stdout)
        return raw

    def watching() -> bool:
        syncs = status().get("syncs")
        return isinstance(syncs, list) and bool(syncs) and syncs[0].get("state") == "watching"

    wait_until(watching, 10, interval=0.2, message="status never said watching")
    report = status()
    assert report["running"] is True and report["pid"] == proc.proc.pid
    row = report["syncs"][0]  # type: ignore[index]
    assert row["uploaded_files"] == 2 and row["uploaded_bytes"] == 6, row
    assert row["downloaded_files"] == 0 and row["conflicts"] == 0, row
    assert str(workdir) in row["local"] and row["agent"], row

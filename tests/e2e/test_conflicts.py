"""Conflicts end to end: real conflicts on every target and agent (Docker with the python agent,
Docker with the shell agent, a local folder), listed and resolved through the real CLI
(``podsync conflicts [--json]``, ``podsync conflicts resolve``), both ways, while a sync runs
and when none does. At every step no version is lost: each content is in place on a side, in
``.devspace/conflicts/`` or in ``.devspace/trash/``. Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Target
from tests.e2e.harness import SyncProcess, read_local
from tests.e2e.test_faults import agent_frozen
from tests.support.docker import docker_env
from tests.support.wait import wait_until

OLD = 1_000_000_000  # an mtime in 2001: the local copy is the older one


def start(target: Target, workdir: Path, running: list[SyncProcess], *extra: str) -> SyncProcess:
    proc = SyncProcess(["--local-path", str(workdir), *target.args, *extra], cwd=workdir)
    running.append(proc)
    return proc


def podsync(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in the project folder (another process than the running sync)."""
    env = {**docker_env(), "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "podsync", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def listed(workdir: Path) -> list[dict[str, Any]]:
    done = podsync(workdir, "conflicts", "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)["conflicts"]
    return rows


def status_count(workdir: Path) -> int:
    done = podsync(workdir, "status", "sync", "--json")
    assert done.returncode == 0, done.stderr
    count: int = json.loads(done.stdout)["unresolved_conflicts"]
    return count


def kept(workdir: Path, target: Target, name: str) -> set[bytes]:
    """Every version of ``name`` that exists anywhere: both sides, saved copies, the trash."""
    found = {read_local(workdir, name), target.far.read(name)}
    for folder in ("conflicts", "trash"):
        found.update(p.read_bytes() for p in (workdir / ".devspace" / folder).rglob(name))
    return {v for v in found if v is not None}


def watch_conflict(target: Target, workdir: Path, proc: SyncProcess) -> None:
    """f.txt edited on both sides at once while the sync watches: the local version wins in
    the container, the container's is saved and listed."""
    (workdir / "f.txt").write_text("v0\n")
    wait_until(lambda: target.far.read("f.txt") == b"v0\n", 15, message=proc.output)
    with agent_frozen(target):
        target.far.write("f.txt", b"container edit\n")
        (workdir / "f.txt").write_text("local edit\n")
    wait_until(
        lambda: target.far.read("f.txt") == b"local edit\n" and len(listed(workdir)) == 1,
        20,
        message=f"the conflict was not listed:\n{proc.output}",
    )


def initial_conflict(target: Target, workdir: Path) -> None:
    """page.html: the container's copy is newer, so the initial sync leaves both as they are."""
    (workdir / "page.html").write_text("local, older")
    os.utime(workdir / "page.html", (OLD, OLD))
    target.far.write("page.html", b"container, newer")


def test_watch_conflict_listed_then_keep_container_while_the_sync_runs(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    proc = start(target, workdir, running)
    proc.wait_watching()
    watch_conflict(target, workdir, proc)
    (row,) = listed(workdir)
    assert row["path"] == "f.txt" and row["local_root"] == str(workdir)
    assert row["local"]["size"] == len(b"local edit\n") and row["local"]["in_container"]
    assert row["container"]["size"] == len(b"container edit\n")
    assert not row["container"]["in_container"]
    assert Path(row["container"]["saved"]).read_bytes() == b"container edit\n"
    text = podsync(workdir, "conflicts")
    assert text.returncode == 0 and "1 unresolved conflict(s)" in text.stdout
    for part in ("f.txt", "11 B", "15 B", "saved as", ".devspace/conflicts/"):
        assert part in text.stdout, text.stdout
    assert status_count(workdir) == 1

    done = podsync(workdir, "conflicts", "resolve", "f.txt", "--keep", "container")
    assert done.returncode == 0, done.stderr
    assert "f.txt: kept the container's version" in done.stdout
    assert (workdir / "f.txt").read_bytes() == b"container edit\n"
    wait_until(
        lambda: target.far.read("f.txt") == b"container edit\n",
        15,
        message=f"the running sync did not upload the kept version:\n{proc.output}",
    )
    assert kept(workdir, target, "f.txt") >= {b"local edit\n", b"container edit\n"}
    assert listed(workdir) == [] and status_count(workdir) == 0
    assert proc.proc.poll() is None, proc.output


def test_watch_conflict_keep_local_when_no_sync_runs(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    proc = start(target, workdir, running)
    proc.wait_watching()
    watch_conflict(target, workdir, proc)
    assert proc.stop() in (0, 130), proc.output
    assert kept(workdir, target, "f.txt") == {b"local edit\n", b"container edit\n"}

    done = podsync(workdir, "conflicts", "resolve", "--all", "--keep", "local")
    assert done.returncode == 0, done.stderr
    assert listed(workdir) == [] and status_count(workdir) == 0
    assert kept(workdir, target, "f.txt") == {b"local edit\n", b"container edit\n"}  # trash
    assert not list((workdir / ".devspace" / "conflicts").rglob("f.txt"))

    again = start(target, workdir, running, "--no-watch")  # resumes from the saved state
    assert again.finish() == 0, again.output
    assert target.far.read("f.txt") == b"local edit\n"
    assert (workdir / "f.txt").read_bytes() == b"local edit\n"
    assert listed(workdir) == [], again.output


def test_initial_sync_conflict_keep_container_when_no_sync_runs(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    initial_conflict(target, workdir)
    first = start(target, workdir, running, "--no-watch")
    assert first.finish() == 0, first.output
    assert "conflict: page.html" in first.output
    (row,) = listed(workdir)
    assert row["container"]["in_container"] and not row["local"]["in_container"]
    assert Path(row["container"]["saved"]).read_bytes() == b"container, newer"
    # The spec's outcome is unchanged: both sides left as they were.
    assert (workdir / "page.html").read_bytes() == b"local, older"
    assert target.far.read("page.html") == b"container, newer"

    done = podsync(workdir, "conflicts", "resolve", "page.html", "--keep", "container")
    assert done.returncode == 0, done.stderr
    assert (workdir / "page.html").read_bytes() == b"container, newer"
    assert kept(workdir, target, "page.html") == {b"local, older", b"container, newer"}

    # The spec's initial sync again (no saved state): the resolved file is the newer one.
    again = start(target, workdir, running, "--no-watch", "--reset-state")
    assert again.finish() == 0, again.output
    assert "conflict:" not in again.output, again.output
    assert target.far.read("page.html") == b"container, newer"
    assert listed(workdir) == []


def test_initial_sync_conflict_keep_local_while_the_sync_runs(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    initial_conflict(target, workdir)
    proc = start(target, workdir, running)
    proc.wait_watching()
    wait_until(lambda: len(listed(workdir)) == 1, 15, message=proc.output)
    assert status_count(workdir) == 1
    assert kept(workdir, target, "page.html") == {b"local, older", b"container, newer"}

    done = podsync(workdir, "conflicts", "resolve", "page.html", "--keep", "local")
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: target.far.read("page.html") == b"local, older",
        15,
        message=f"the local version never reached the container:\n{proc.output}",
    )
    # The container's version the user rejected is in the trash, not raised again.
    assert kept(workdir, target, "page.html") == {b"local, older", b"container, newer"}
    assert listed(workdir) == [] and status_count(workdir) == 0
    assert proc.output.count("conflict: page.html") == 1, proc.output


def test_initial_sync_conflict_keep_local_when_no_sync_runs_then_resume(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    initial_conflict(target, workdir)
    first = start(target, workdir, running, "--no-watch")
    assert first.finish() == 0, first.output
    assert len(listed(workdir)) == 1

    done = podsync(workdir, "conflicts", "resolve", "page.html", "--keep", "local")
    assert done.returncode == 0, done.stderr
    assert kept(workdir, target, "page.html") == {b"local, older", b"container, newer"}

    # A restart resumes from the saved state: the local file is now a local edit, it wins,
    # and the container version the user rejected is not raised as a new conflict.
    again = start(target, workdir, running, "--no-watch")
    assert again.finish() == 0, again.output
    assert target.far.read("page.html") == b"local, older"
    assert "conflict:" not in again.output, again.output
    assert listed(workdir) == [] and status_count(workdir) == 0
    assert kept(workdir, target, "page.html") == {b"local, older", b"container, newer"}

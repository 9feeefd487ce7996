"""`podsync sync` end to end, against every target and agent: a real CLI process, real files,
real containers. Each test states one user-visible behaviour and waits on it with a deadline."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from tests.e2e.conftest import Target
from tests.e2e.harness import SyncProcess, agent_processes, read_local
from tests.support.wait import wait_until


def start(target: Target, workdir: Path, running: list[SyncProcess], *extra: str) -> SyncProcess:
    proc = SyncProcess(["--local-path", str(workdir), *target.args, *extra], cwd=workdir)
    running.append(proc)
    return proc


def test_initial_sync_follows_the_spec(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "src").mkdir()
    (workdir / "src" / "app.py").write_text("print('hi')\n")
    (workdir / "empty").mkdir()
    (workdir / "newer.txt").write_text("local and newer")
    target.far.write("newer.txt", b"remote and older")
    os.utime(workdir / "newer.txt", (2_000_000_000, 2_000_000_000))
    target.far.write("older.txt", b"remote and newer")
    (workdir / "older.txt").write_text("local and older!")
    os.utime(workdir / "older.txt", (1_000_000_000, 1_000_000_000))
    target.far.write("remote-only.txt", b"only in the container")

    proc = start(target, workdir, running, "--no-watch", "--no-download-on-initial-sync")
    assert proc.finish() == 0, proc.output

    assert target.far.read("src/app.py") == b"print('hi')\n"
    assert target.far.exists("empty")
    assert target.far.read("newer.txt") == b"local and newer"
    # The container's newer copy is not overwritten, nor is the local one: a conflict.
    assert target.far.read("older.txt") == b"remote and newer"
    assert (workdir / "older.txt").read_text() == "local and older!"
    assert "older.txt" in proc.output and "conflict" in proc.output
    assert not target.far.exists("remote-only.txt")
    assert not (workdir / "remote-only.txt").exists()


def test_download_on_initial_sync_fetches_remote_only_files(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    target.far.write("deps/lib.js", b"module.exports = 1\n")
    proc = start(target, workdir, running, "--no-watch", "--download-on-initial-sync")
    assert proc.finish() == 0, proc.output
    assert read_local(workdir, "deps/lib.js") == b"module.exports = 1\n"


def test_excludes_in_all_three_lists(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    for rel in ("logs/a.log", "node_modules/m.js", "tmp/t.txt", "keep.txt"):
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).write_text(rel)
    target.far.write("logs/remote.log", b"remote log")
    target.far.write("node_modules/remote.js", b"remote module")
    target.far.write("tmp/remote.tmp", b"remote tmp")
    proc = start(
        target,
        workdir,
        running,
        "--no-watch",
        "--no-download-on-initial-sync",
        "--exclude",
        "logs/",
        "--upload-exclude",
        "node_modules/",
        "--download-exclude",
        "tmp/",
    )
    assert proc.finish() == 0, proc.output
    assert target.far.read("keep.txt") == b"keep.txt"
    assert target.far.read("logs/a.log") is None  # excluded: not uploaded
    assert target.far.read("logs/remote.log") == b"remote log"  # excluded: not deleted
    assert target.far.read("node_modules/m.js") is None  # upload-excluded: not uploaded
    assert target.far.read("node_modules/remote.js") == b"remote module"  # nor deleted
    assert target.far.read("tmp/t.txt") == b"tmp/t.txt"  # download-excluded: uploaded
    assert target.far.read("tmp/remote.tmp") is None  # and remote-only deleted


def test_continuous_sync_both_ways(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "a.txt").write_text("one")
    proc = start(target, workdir, running)
    proc.wait_watching()
    assert target.far.read("a.txt") == b"one"

    (workdir / "a.txt").write_text("two")
    wait_until(lambda: target.far.read("a.txt") == b"two", 10, message="local edit not uploaded")
    (workdir / "dir" / "sub").mkdir(parents=True)
    (workdir / "dir" / "sub" / "new.txt").write_text("new")
    wait_until(lambda: target.far.read("dir/sub/new.txt") == b"new", 10, message="new dir")

    target.far.write("from-container.txt", b"hello from the container")
    wait_until(
        lambda: read_local(workdir, "from-container.txt") == b"hello from the container",
        10,
        message="container edit not downloaded",
    )
    target.far.write("a.txt", b"three")
    wait_until(lambda: read_local(workdir, "a.txt") == b"three", 10, message="remote modify")

    (workdir / "a.txt").rename(workdir / "b.txt")
    wait_until(
        lambda: target.far.read("b.txt") == b"three" and not target.far.exists("a.txt"),
        10,
        message="local rename",
    )
    target.far.sh(f"rm -rf {target.far.root}/dir")
    wait_until(lambda: not (workdir / "dir").exists(), 10, message="remote delete of a dir")
    trash = workdir / ".devspace" / "trash"
    assert any(p.name == "new.txt" for p in trash.rglob("*")), "deleted file not kept in trash"
    assert proc.stop() == 0, proc.output


def test_exec_bit_mtime_and_symlinks(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    script = workdir / "run.sh"
    script.write_text("#!/bin/sh\necho ok\n")
    script.chmod(0o755)
    os.utime(script, (1_600_000_000, 1_600_000_000))
    (workdir / "link").symlink_to("run.sh")
    (workdir / "escape").symlink_to("/etc/passwd")
    proc = start(target, workdir, running, "--no-watch")
    assert proc.finish() == 0, proc.output
    assert target.far.sh(f"[ -x {target.far.root}/run.sh ] && echo x") == "x"
    assert target.far.sh(f"stat -c %Y {target.far.root}/run.sh") == "1600000000"
    assert target.far.sh(f"readlink {target.far.root}/link") == "run.sh"
    assert not target.far.exists("escape")
    assert "escape" in proc.output  # skipped with a warning


def test_sigterm_stops_cleanly_and_leaves_no_agent(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "f.txt").write_text("x")
    proc = start(target, workdir, running)
    proc.wait_watching()
    assert proc.stop(signal.SIGTERM) == 0, proc.output
    if target.container:
        wait_until(
            lambda: not agent_processes(target.container or ""),
            10,
            message="agent process left in the container",
        )
    leftovers = target.far.sh(f"find {target.far.root} -name '.podsync-*'")
    assert leftovers == ""


def test_emptied_container_halts_instead_of_deleting_local_files(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    for i in range(30):
        (workdir / f"f{i}.txt").write_text(str(i))
    proc = start(target, workdir, running)
    proc.wait_watching()
    target.far.sh(f"rm -rf {target.far.root}/*")
    proc.wait_for_output("halted", 15)
    assert len(list(workdir.glob("f*.txt"))) == 30
    assert proc.finish(20) == 1


@pytest.mark.parametrize("flag", ["--upload-only", "--download-only"])
def test_one_way_modes(
    flag: str, target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    (workdir / "local.txt").write_text("l")
    target.far.write("remote.txt", b"r")
    proc = start(target, workdir, running, flag)
    proc.wait_watching()
    if flag == "--upload-only":
        wait_until(lambda: target.far.read("local.txt") == b"l", 10)
        target.far.write("late.txt", b"late")
        (workdir / "marker.txt").write_text("m")
        wait_until(lambda: target.far.read("marker.txt") == b"m", 10)
        assert not (workdir / "late.txt").exists()
    else:
        wait_until(lambda: read_local(workdir, "remote.txt") == b"r", 10)
        (workdir / "late.txt").write_text("late")
        target.far.write("marker.txt", b"m")
        wait_until(lambda: read_local(workdir, "marker.txt") == b"m", 10)
        assert not target.far.exists("late.txt")


def test_equal_content_with_other_mtime_is_not_sent_again(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    """DevSpace re-uploads whole trees when image mtimes differ; we compare hashes first."""
    (workdir / "same.txt").write_bytes(b"identical content")
    os.utime(workdir / "same.txt", (2_000_000_000, 2_000_000_000))  # local is "newer"
    target.far.write("same.txt", b"identical content")
    (workdir / "differs.txt").write_bytes(b"local version!!")
    os.utime(workdir / "differs.txt", (2_000_000_000, 2_000_000_000))
    target.far.write("differs.txt", b"remote version!")
    before = target.far.sh(f"stat -c %Y {target.far.root}/same.txt")
    proc = start(target, workdir, running, "--no-watch", "--verbose")
    assert proc.finish() == 0, proc.output
    assert target.far.sh(f"stat -c %Y {target.far.root}/same.txt") == before  # untouched
    assert target.far.read("differs.txt") == b"local version!!"  # same size, other content
    assert "uploaded 1 " in proc.output, proc.output

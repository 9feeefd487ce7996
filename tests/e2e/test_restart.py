"""A restart resumes from the state the last run saved (issue 9, part 2), and a local side
that suddenly looks emptied halts the sync instead of emptying the container (issue 8,
defect 1). Real CLI processes, real containers, every wait with a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from tests.e2e.conftest import Target
from tests.e2e.harness import DockerFar, SyncProcess, read_local
from tests.support import docker as d
from tests.support.wait import wait_until

OLD = 1_600_000_000  # an mtime well in the past (seconds)
#: The spec's default for dev.sync (`podsync sync` defaults to downloading, as DevSpace's CLI).
NO_FETCH = "--no-download-on-initial-sync"


def start(
    target: Target, root: Path, cwd: Path, running: list[SyncProcess], *extra: str
) -> SyncProcess:
    proc = SyncProcess(["--local-path", str(root), *target.args, *extra], cwd=cwd)
    running.append(proc)
    return proc


def once(target: Target, root: Path, running: list[SyncProcess], *extra: str) -> SyncProcess:
    """One ``--no-watch`` run that must succeed."""
    proc = start(target, root, root, running, "--no-watch", *extra)
    assert proc.finish() == 0, proc.output
    return proc


def seed(root: Path, target: Target, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"v1 {name}\n")
        os.utime(root / name, (OLD, OLD))


def trash_holds(root: Path, name: str, content: bytes) -> bool:
    trash = root / ".devspace" / "trash"
    return any(p.read_bytes() == content for p in trash.rglob(Path(name).name) if p.is_file())


def conflict_copy_holds(root: Path, name: str, content: bytes) -> bool:
    folder = root / ".devspace" / "conflicts"
    return any(p.read_bytes() == content for p in folder.rglob(Path(name).name) if p.is_file())


def test_restart_resumes_three_way(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    names = ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "sub/f.txt"]
    seed(workdir, target, names)
    once(target, workdir, running, NO_FETCH)
    assert target.far.read("sub/f.txt") == b"v1 sub/f.txt\n"

    # While podsync is stopped: edits and deletions on both sides, new files on both sides.
    target.far.write("a.txt", b"container edit\n")
    target.far.sh(f"rm {target.far.root}/b.txt")
    (workdir / "c.txt").write_text("local edit\n")
    (workdir / "d.txt").unlink()
    (workdir / "e.txt").write_text("local side of a conflict\n")
    target.far.write("e.txt", b"container side of a conflict\n")
    target.far.write("made-in-container.txt", b"no record of me\n")
    (workdir / "made-locally.txt").write_text("new here\n")

    proc = once(target, workdir, running, NO_FETCH)
    assert "resume" in proc.output, proc.output

    assert read_local(workdir, "a.txt") == b"container edit\n", "container edit downloaded"
    assert not (workdir / "b.txt").exists(), "container deletion applied locally"
    assert trash_holds(workdir, "b.txt", b"v1 b.txt\n"), "...through the trash"
    assert target.far.read("c.txt") == b"local edit\n", "local edit uploaded"
    assert not target.far.exists("d.txt"), "local deletion applied in the container"
    # Changed on both sides: a conflict exactly as in watch mode (local wins, copy kept).
    assert target.far.read("e.txt") == b"local side of a conflict\n"
    assert conflict_copy_holds(workdir, "e.txt", b"container side of a conflict\n")
    assert "conflict" in proc.output and "e.txt" in proc.output
    # No record: the spec's initial-sync rules (container only -> deleted; local -> uploaded).
    assert not target.far.exists("made-in-container.txt")
    assert target.far.read("made-locally.txt") == b"new here\n"
    assert target.far.read("sub/f.txt") == b"v1 sub/f.txt\n"

    # And a third run has nothing left to do.
    third = once(target, workdir, running, NO_FETCH)
    assert "already in sync" in third.output, third.output


def test_no_record_container_files_download_with_download_on_initial_sync(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    seed(workdir, target, ["a.txt"])
    once(target, workdir, running, "--download-on-initial-sync")
    target.far.write("new/made-in-container.txt", b"fetch me\n")
    once(target, workdir, running, "--download-on-initial-sync")
    assert read_local(workdir, "new/made-in-container.txt") == b"fetch me\n"


def test_reset_state_runs_the_spec_initial_sync(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    seed(workdir, target, ["a.txt"])
    once(target, workdir, running)
    target.far.write("a.txt", b"container edit, newer\n")
    proc = once(target, workdir, running, "--reset-state")
    # The spec: a newer container copy is left as it is and reported, not downloaded.
    assert read_local(workdir, "a.txt") == b"v1 a.txt\n"
    assert target.far.read("a.txt") == b"container edit, newer\n"
    assert "conflict" in proc.output, proc.output


def test_corrupt_state_is_ignored_with_one_line(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    seed(workdir, target, ["a.txt"])
    once(target, workdir, running)
    states = list((workdir / ".devspace" / "podsync" / "state").glob("*.state"))
    assert len(states) == 1, states
    states[0].write_bytes(b"\x00garbage")
    target.far.write("a.txt", b"container edit, newer\n")
    proc = once(target, workdir, running)
    warnings = [ln for ln in proc.lines if "ignoring the saved sync state" in ln]
    assert len(warnings) == 1 and "corrupt" in warnings[0], proc.output
    assert "Traceback" not in proc.output
    # Without a usable state the spec's initial sync decides: the newer container copy stays.
    assert read_local(workdir, "a.txt") == b"v1 a.txt\n"


@pytest.mark.docker
def test_recreated_container_is_not_read_as_changes(
    docker_images: tuple[str, ...], workdir: Path, running: list[SyncProcess]
) -> None:
    name = d.start_container(d.PY_IMAGE)
    try:
        target = Target("docker-python", ["--docker", name], DockerFar(name), name)
        seed(workdir, target, ["a.txt", "b.txt", "keep/c.txt"])
        once(target, workdir, running)
        # The container is replaced by a fresh one of the same name (a new pod, a `docker
        # compose up` after a rebuild): its image holds an older a.txt and nothing else.
        d.remove_container(name)
        d.start_container(d.PY_IMAGE, name=name)
        target.far.write("a.txt", b"image's old copy\n")
        target.far.sh(f"touch -d @{OLD - 100} /app/a.txt")
        (workdir / "b.txt").write_text("edited while stopped\n")
        proc = once(target, workdir, running)
        assert "container is a new one" in proc.output, proc.output
        # Local authority: nothing is deleted or replaced locally, everything is uploaded.
        for rel in ("a.txt", "keep/c.txt"):
            assert read_local(workdir, rel) == f"v1 {rel}\n".encode()
            assert target.far.read(rel) == f"v1 {rel}\n".encode()
        assert target.far.read("b.txt") == b"edited while stopped\n"
        assert not (workdir / ".devspace" / "trash").exists()
    finally:
        d.remove_container(name)


def test_a_state_taken_over_by_other_folders_is_saved_for_them_even_with_nothing_to_do(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    """The local folder replaced by an exact copy (``cp -a``: same files, same mtimes): the
    saved state is not taken (another folder), the initial sync has nothing to do, and the
    state must still be saved for the new folder, or every later run would start over."""
    seed(workdir, target, ["a.txt", "sub/b.txt"])
    once(target, workdir, running)
    copy = workdir.with_name(workdir.name + "-copy")
    shutil.copytree(workdir, copy, symlinks=True)  # copy2: the same mtimes, to the ns
    shutil.rmtree(workdir)
    copy.rename(workdir)
    first = once(target, workdir, running)
    assert "not resuming" in first.output, first.output
    assert "already in sync" in first.output, first.output
    second = once(target, workdir, running)
    assert "not resuming" not in second.output, second.output
    assert "resume: already in sync" in second.output, second.output


# -- issue 8, defect 1: a local side that looks emptied halts the sync ----------------------


def _synced_tree(target: Target, root: Path, running: list[SyncProcess], cwd: Path) -> SyncProcess:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(50):
        (root / f"f{i:02}.txt").write_text(f"file {i}\n")
    proc = start(target, root, cwd, running)
    proc.wait_watching()
    wait_until(lambda: target.far.exists("f49.txt"), 30, message="initial upload")
    return proc


def _halts_and_container_keeps_everything(proc: SyncProcess, target: Target) -> None:
    wait_until(lambda: proc.proc.poll() is not None, 30, message="podsync did not halt")
    assert proc.proc.returncode == 1, proc.output
    halted = [ln for ln in proc.lines if "halted:" in ln]
    assert len(halted) == 1, proc.output
    assert "Traceback" not in proc.output
    for i in range(50):
        assert target.far.read(f"f{i:02}.txt") == f"file {i}\n".encode()


def test_emptying_the_local_folder_halts(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    root = workdir / "src"
    proc = _synced_tree(target, root, running, workdir)
    for child in root.iterdir():
        child.unlink()
    _halts_and_container_keeps_everything(proc, target)


def test_deleting_the_local_folder_halts(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    root = workdir / "src"
    proc = _synced_tree(target, root, running, workdir)
    shutil.rmtree(root)
    _halts_and_container_keeps_everything(proc, target)


def test_replacing_the_local_folder_by_an_empty_one_halts(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    root = workdir / "src"
    proc = _synced_tree(target, root, running, workdir)
    root.rename(workdir / "src.old")
    root.mkdir()
    _halts_and_container_keeps_everything(proc, target)


def test_restart_after_the_local_folder_was_emptied_halts_too(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    root = workdir / "src"
    proc = _synced_tree(target, root, running, workdir)
    assert proc.stop(signal.SIGINT) == 0, proc.output
    for child in root.iterdir():
        child.unlink()
    again = start(target, root, workdir, running)
    _halts_and_container_keeps_everything(again, target)
    assert "--reset-state" in again.output


def test_restart_after_the_local_folder_was_replaced_by_an_empty_one_halts(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    """The saved state is not taken (the folder is another one), but it still says what the
    local folder held: an empty new folder must not empty the container (review 1.1)."""
    root = workdir / "src"
    proc = _synced_tree(target, root, running, workdir)
    assert proc.stop(signal.SIGINT) == 0, proc.output
    root.rename(workdir / "src.old")
    root.mkdir()
    again = start(target, root, workdir, running, NO_FETCH)
    _halts_and_container_keeps_everything(again, target)
    assert "--reset-state" in again.output


def test_dry_run_with_reset_state_previews_the_spec_initial_sync(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    """--dry-run --reset-state shows what --reset-state would do (usertest), and forgets
    nothing: the next real run still resumes."""
    seed(workdir, target, ["a.txt"])
    once(target, workdir, running, NO_FETCH)
    target.far.write("a.txt", b"container edit, newer\n")
    preview = once(target, workdir, running, NO_FETCH, "--dry-run", "--reset-state")
    assert "initial sync plan" in preview.output and "conflict" in preview.output, preview.output
    assert read_local(workdir, "a.txt") == b"v1 a.txt\n"
    resumed = once(target, workdir, running, NO_FETCH)
    assert "resume" in resumed.output, resumed.output
    assert read_local(workdir, "a.txt") == b"container edit, newer\n"

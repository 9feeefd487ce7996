"""Saving the container's version of a conflict, end to end on real targets and agents.

- When the copy cannot be saved (here ``.devspace/conflicts`` is a plain file, so no folder
  can be made in it), the overwrite that depended on it does not happen: both versions stay
  where they are, and one line says so.
- When both sides hold the same bytes there is nothing to keep apart: no copy, no record.
- A saved copy is never silent: one line names where it was saved.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.conftest import Target
from tests.e2e.harness import SyncProcess
from tests.e2e.test_conflicts import listed, start
from tests.e2e.test_faults import agent_frozen
from tests.support.wait import wait_until


def _log(workdir: Path) -> str:
    log = workdir / ".devspace" / "logs" / "sync.log"
    return log.read_text(errors="replace") if log.is_file() else ""


def _settled(log: str) -> bool:
    """Was f.txt planned again after its first upload failed (the container changed)? It
    is then named again, or it came in one batch with g.txt's event."""
    tail = log.split("problem: f.txt")[-1] if "problem: f.txt" in log else ""
    batches = re.findall(r"batch of (\d+)", tail)
    return "f.txt" in tail or len(batches) >= 2 or any(int(n) > 1 for n in batches)


def test_unsaved_container_version_is_not_overwritten(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    proc = start(target, workdir, running)
    proc.wait_watching()
    (workdir / "f.txt").write_bytes(b"v0\n")
    wait_until(lambda: target.far.read("f.txt") == b"v0\n", 15, message=proc.output)
    conflicts = workdir / ".devspace" / "conflicts"
    conflicts.mkdir(parents=True, exist_ok=True)
    conflicts.rmdir()
    conflicts.write_text("not a folder\n")  # nothing can be saved under it
    with agent_frozen(target):
        target.far.write("f.txt", b"container edit\n")
        (workdir / "f.txt").write_bytes(b"local edit\n")
    wait_until(
        lambda: "could not be saved" in proc.output,
        20,
        message=f"no line said the copy could not be saved:\n{proc.output}",
    )
    # Both versions are where they were; the container's was not replaced.
    assert target.far.read("f.txt") == b"container edit\n", proc.output
    assert (workdir / "f.txt").read_bytes() == b"local edit\n"
    lines = [line for line in proc.output.splitlines() if "f.txt" in line and "saved" in line]
    assert len(lines) == 1, proc.output
    assert "Traceback" not in proc.output
    assert proc.proc.poll() is None, proc.output


def test_identical_contents_are_not_a_conflict(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    proc = start(target, workdir, running)
    proc.wait_watching()
    (workdir / "f.txt").write_bytes(b"v0\n")
    wait_until(lambda: target.far.read("f.txt") == b"v0\n", 15, message=proc.output)
    with agent_frozen(target):
        target.far.write("f.txt", b"same edit\n")
        (workdir / "f.txt").write_bytes(b"same edit\n")
    (workdir / "g.txt").write_bytes(b"after\n")  # a later change: the first one is done
    wait_until(lambda: target.far.read("g.txt") == b"after\n", 20, message=proc.output)
    wait_until(lambda: _settled(_log(workdir)), 30, message=_log(workdir))
    assert listed(workdir) == [], proc.output
    saved = workdir / ".devspace" / "conflicts"
    assert not list(saved.rglob("f.txt")) if saved.exists() else True
    assert "conflict: f.txt" not in proc.output, proc.output
    assert target.far.read("f.txt") == b"same edit\n"


def test_saved_copy_is_announced_with_its_place(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    proc = start(target, workdir, running)
    proc.wait_watching()
    (workdir / "f.txt").write_bytes(b"v0\n")
    wait_until(lambda: target.far.read("f.txt") == b"v0\n", 15, message=proc.output)
    with agent_frozen(target):
        target.far.write("f.txt", b"container edit\n")
        (workdir / "f.txt").write_bytes(b"local edit\n")
    wait_until(lambda: len(listed(workdir)) == 1, 20, message=proc.output)
    (row,) = listed(workdir)
    saved = Path(row["container"]["saved"])
    assert saved.read_bytes() == b"container edit\n"
    shown = saved.relative_to(workdir)
    wait_until(lambda: str(shown) in proc.output, 10, message=proc.output)
    lines = [line for line in proc.output.splitlines() if str(shown) in line]
    assert len(lines) == 1 and "f.txt" in lines[0], proc.output

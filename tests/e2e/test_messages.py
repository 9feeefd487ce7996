"""What podsync prints, end to end on real targets: each message once, in the right words."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Target
from tests.e2e.harness import SyncProcess
from tests.e2e.test_conflicts import start


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

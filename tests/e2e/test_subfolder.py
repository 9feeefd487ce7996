"""``podsync conflicts`` and ``podsync status`` run from a subfolder of the project find the
project as git does: the nearest folder above holding devspace.yaml or .devspace. A real
conflict on a real target, the real CLI in another process."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Target
from tests.e2e.harness import SyncProcess
from tests.e2e.test_conflicts import initial_conflict, podsync, start


def test_conflicts_and_status_from_a_subfolder(
    target: Target, workdir: Path, running: list[SyncProcess]
) -> None:
    initial_conflict(target, workdir)
    (workdir / "src" / "deep").mkdir(parents=True)
    first = start(target, workdir, running, "--no-watch")
    assert first.finish() == 0, first.output
    sub = workdir / "src" / "deep"

    listed = podsync(sub, "conflicts", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["conflicts"]
    assert row["path"] == "page.html"
    text = podsync(sub, "conflicts")
    assert "1 unresolved conflict(s)" in text.stdout, text.stdout + text.stderr
    status = podsync(sub, "status", "sync", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["unresolved_conflicts"] == 1

    # A path relative to the folder the command runs in.
    done = podsync(sub, "conflicts", "resolve", "../../page.html", "--keep", "container")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (workdir / "page.html").read_bytes() == b"container, newer"
    again = podsync(sub, "conflicts", "--json")
    assert json.loads(again.stdout)["conflicts"] == []
    assert not (sub / ".devspace").exists()

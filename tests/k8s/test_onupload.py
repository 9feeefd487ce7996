"""``onUpload.exec`` through the real ``podsync dev`` on the real cluster kit: one pod, two
containers (python agent and shell agent), commands run in each container's sync folder after
the initial sync and after matching uploads, their output prefixed ``[sync-N exec]``, what they
make synced back, a failing one reported, a hanging one stopped when podsync stops.

Needs the kit's test helpers (tests/k8s/kit.py and the ``space`` fixture): where they are
missing the module is skipped, except under PODSYNC_REQUIRE_K8S=1, where that is an error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.support.wait import wait_until

try:
    from tests.k8s.kit import Kube, Podsync, container
except ImportError:  # pragma: no cover - before the kit's helpers are merged
    if os.environ.get("PODSYNC_REQUIRE_K8S") == "1":
        raise
    pytest.skip("tests/k8s/kit.py (the cluster kit helpers) is not here", allow_module_level=True)

pytestmark = pytest.mark.k8s

SCENARIO = Path(__file__).parent / "scenarios" / "on-upload"


def test_dev_runs_on_upload_commands_in_both_containers(space: Kube, tmp_path: Path) -> None:
    project = tmp_path / "on-upload"
    shutil.copytree(SCENARIO, project)
    space.pod(
        "app",
        [container("py", space.images.py), container("sh", space.images.busybox)],
        labels={"app": "onupload"},
    )
    dev = Podsync(space, project, "dev")
    try:
        dev.wait_for("watching for changes", count=2)
        # Once after the initial sync, in each container's folder; output prefixed.
        dev.wait_for('[sync-0 exec] installing {"name":"demo","version":"1.0.0"}')
        wait_until(
            lambda: (project / "node_modules" / "dep" / "seen.json").is_file(),
            60,
            message=f"the command's node_modules/ never came back:\n{dev.output}",
        )
        wait_until(
            lambda: _read(project / "shell" / "count.out") == "2\n",
            60,
            message=f"the shell container's command never ran or never came back:\n{dev.output}",
        )
        assert space.cat("app", "/app/count.out", "sh") == b"2\n"
        assert "[sync-1 exec] running `ls *.txt | wc -l | tr -d ' ' > count.out`" in dev.output
        assert dev.output.index("initial sync:") < dev.output.index("[sync-0 exec] running")

        # Watch phase: a matching upload runs it again; a failing command is one line.
        (project / "package.json").write_text('{"name":"demo","version":"2.0.0"}\n')
        dev.wait_for('[sync-0 exec] installing {"name":"demo","version":"2.0.0"}')
        (project / "shell" / "c.txt").write_text("three\n")
        wait_until(lambda: _read(project / "shell" / "count.out") == "3\n", 60, message="no rerun")
        (project / "Makefile").write_text("all:\n")
        dev.wait_for("[sync-0 exec] make is broken")
        dev.wait_for("[sync-0 exec] `echo make is broken >&2; exit 5` failed with exit code 5")
        (project / "after.txt").write_text("still syncing\n")
        wait_until(
            lambda: space.cat("app", "/app/after.txt", "py") == b"still syncing\n",
            60,
            message=f"the sync stopped after a failing command:\n{dev.output}",
        )

        # A command that hangs: the sync goes on; podsync stops it when it stops.
        (project / "hang").write_text("x")
        dev.wait_for("[sync-0 exec] hanging")
        pid = (space.cat("app", "/tmp/hang.pid", "py") or b"").decode().strip()
        assert pid.isdigit(), dev.output
        (project / "src" / "index.js").write_text("console.log(2)\n")
        wait_until(
            lambda: space.cat("app", "/app/src/index.js", "py") == b"console.log(2)\n",
            60,
            message="the sync is held by a hanging command",
        )
    finally:
        code = dev.stop()
    assert code == 0, dev.output
    assert "[sync-0 exec] stopped `echo $$ > /tmp/hang.pid; echo hanging; exec sleep 1000`: " \
        "podsync is stopping" in dev.output  # fmt: skip
    alive = space.exec("app", ["sh", "-c", f"kill -0 {pid}"], "py")
    assert alive.returncode != 0, "the hanging command outlived podsync"
    log = (project / ".devspace" / "logs" / "sync.log").read_text()
    assert "[sync-0 exec] installing" in log and "[sync-1 exec] running" in log


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None

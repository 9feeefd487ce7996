"""Staging dirs a killed upload left behind: removed at the next connect when the shell that
made them is gone (PID and start time from its /proc stat line, kept in ``.owner``); another
sync's upload in progress (its shell alive) and an owner-less young dir are left alone. Real
busybox container. The end-to-end case (docker kill mid-upload) is in
tests/e2e/test_fault_injection.py."""

from __future__ import annotations

import pytest
from shell_helpers import Box, run
from tests.support import docker as d

pytestmark = pytest.mark.docker


def test_orphaned_staging_dirs_go_and_live_ones_stay(box: Box) -> None:
    # A live owner: a process that keeps running while the endpoint starts.
    assert d.docker("exec", "-d", box.name, "sleep", "120").returncode == 0
    box.sh("until pidof sleep > /tmp/live.pid; do sleep 0.05; done")
    box.sh(
        "cd /app && mkdir .podsync-stage-live .podsync-stage-dead .podsync-stage-old"
        " && read -r p </tmp/live.pid && cat /proc/$p/stat > .podsync-stage-live/.owner"
        # A dead owner: this shell's own line, written just before it exits.
        " && cat /proc/$$/stat > .podsync-stage-dead/.owner"
        " && echo partial > .podsync-stage-dead/x && echo partial > .podsync-stage-live/x"
    )
    run(box.endpoint().start(watch=False))
    left = box.sh("ls -a /app").decode().split()
    assert ".podsync-stage-dead" not in left
    assert ".podsync-stage-live" in left, "another sync's upload in progress was removed"
    assert ".podsync-stage-old" in left, "a young staging dir without an owner was removed"
    box.sh("read -r p </tmp/live.pid && kill $p")

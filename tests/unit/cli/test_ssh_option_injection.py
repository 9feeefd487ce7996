"""An ssh:// user part that starts with "-" would reach ssh as an option (``-oProxyCommand=``
runs a command): a one-line usage error (exit 2), and nothing runs. The real CLI in a
subprocess, with the real ssh client on PATH when there is one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from podsync.errors import UsageError
from podsync.transport.ssh import parse_destination

INJECTED = ["ssh://-oProxyCommand=touch${IFS}MARK@localhost", "ssh://-oProxyCommand=x@host:2222/"]


@pytest.mark.parametrize("value", INJECTED)
def test_a_dash_user_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match=r"--ssh: .* user name"):
        parse_destination(value)


def test_the_cli_refuses_it_in_one_line_and_runs_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "podsync", "sync", "--local-path", ".", "--ssh", INJECTED[0]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("podsync: --ssh: "), done.stderr
    assert not list(tmp_path.glob("MARK*")), "ssh ran the injected ProxyCommand"

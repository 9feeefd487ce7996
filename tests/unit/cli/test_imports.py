"""Lazy imports: each command loads only what it needs. The real CLI runs in a subprocess under
``python -X importtime`` (every module the process imported is listed on stderr), so this sees
exactly what a user's ``podsync`` loads. These tests check which modules load, never how long
it took (timings are measured outside the suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.docker import docker_env

#: Never needed by --help, the Docker path or a local target: the Kubernetes client and its
#: websocket/HTTP stack, the interactive picker, the YAML/config stack, rich (only `status`,
#: `list` and the initial-sync progress bar on a terminal use it).
HEAVY = (
    "kubernetes",
    "urllib3",
    "websockets",
    "questionary",
    "prompt_toolkit",
    "ruamel",
    "yaml",
    "rich",
    "podsync.transport.kubernetes",
    "podsync.transport.kubeconfig",
    "podsync.config.loader",
    "podsync.config.models",
    "podsync.engine.devmode",
)


def loaded(args: list[str], cwd: Path) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "podsync", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=docker_env(),
    )
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return done.returncode, names


def heavy_in(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))


def test_help_loads_no_engine_no_config_no_rich_no_pydantic(tmp_path: Path) -> None:
    code, names = loaded(["--help"], tmp_path)
    assert code == 0
    assert heavy_in(names) == []
    assert not {n for n in names if n.startswith(("podsync.engine", "pydantic"))}, names


def test_sync_help_loads_nothing_heavy(tmp_path: Path) -> None:
    code, names = loaded(["sync", "--help"], tmp_path)
    assert code == 0
    assert heavy_in(names) == []


def test_a_local_target_sync_loads_nothing_heavy(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "a.txt").write_text("a")
    args = ["sync", "--local-path", "here", "--local-target", "there", "--no-watch"]
    code, names = loaded(args, tmp_path)
    assert code == 0 and (tmp_path / "there" / "a.txt").read_text() == "a"
    assert heavy_in(names) == []
    assert "podsync.engine.session" in names  # it did run the engine


def test_the_docker_path_loads_nothing_heavy(tmp_path: Path) -> None:
    """Whether or not a Docker engine answers, the run goes through the Docker transport
    (then fails, exit 1, for a container that does not exist)."""
    args = ["sync", "--docker", "podsync-test-no-such-container", "--no-watch"]
    code, names = loaded(args, tmp_path)
    assert code == 1
    assert "podsync.transport.docker" in names
    assert heavy_in(names) == []


@pytest.mark.parametrize("args", [["status", "sync"], ["conflicts"]])
def test_status_and_conflicts_load_no_kubernetes(tmp_path: Path, args: list[str]) -> None:
    code, names = loaded(args, tmp_path)
    assert code == 0
    assert not [n for n in names if n.startswith(("kubernetes", "questionary", "ruamel"))]

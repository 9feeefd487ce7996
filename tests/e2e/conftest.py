"""Fixtures for end-to-end sync tests: one far side per target and agent kind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.e2e.harness import DockerFar, Far, LocalFar, SyncProcess
from tests.support import docker as d


@dataclass
class Target:
    """A far side to sync with: the CLI flags that select it and a view of its files."""

    kind: str
    args: list[str]
    far: Far
    container: str | None = None


def _docker_target(image: str, kind: str) -> Iterator[Target]:
    from tests.conftest import _require_docker

    _require_docker()
    name = d.start_container(image)
    try:
        yield Target(kind, ["--docker", name], DockerFar(name), name)
    finally:
        d.remove_container(name)


@pytest.fixture(params=["docker-python", "docker-shell", "local"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """Every target/agent combination the engine must behave the same on."""
    if request.param == "local":
        far_root = tmp_path / "far"
        far_root.mkdir()
        yield Target("local", ["--local-target", str(far_root)], LocalFar(str(far_root)))
    elif request.param == "docker-python":
        yield from _docker_target(d.PY_IMAGE, request.param)
    else:
        yield from _docker_target(d.BUSYBOX_IMAGE, request.param)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def running() -> Iterator[list[SyncProcess]]:
    """Processes started by a test; stopped (SIGINT) at teardown whatever happened."""
    procs: list[SyncProcess] = []
    yield procs
    for proc in procs:
        proc.stop()
        # Captured by pytest and shown only when the test failed: what podsync said.
        print(f"--- podsync {' '.join(proc.args)} (exit {proc.proc.returncode}):")
        print(proc.output)
        log = proc.cwd / ".devspace" / "logs" / "sync.log"
        if log.is_file():
            print(f"--- {log}:")
            print(log.read_text(encoding="utf-8", errors="replace")[-20000:])

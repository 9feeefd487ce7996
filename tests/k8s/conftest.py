"""Fixtures for the Kubernetes tests: ``k8s_api`` (one emulator per session) and ``k8s``.

``k8s_api`` starts the emulator (tests/k8s_emulator: it stands in for a real API server, none
can run here) on its own event loop in a background thread, writes a kubeconfig (CA data,
token user, context namespace ``default``) and removes every container it started at the end.
``k8s`` is the same object, but deletes the pods a test created when that test ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_emulator.fixture import K8sApi, start_k8s_api


def _docker_works() -> bool:
    os.environ.setdefault("DOCKER_HOST", "unix:///tmp/podsync-docker/docker.sock")
    if shutil.which("docker") is None:
        return False
    res = subprocess.run(["docker", "info"], capture_output=True, check=False)
    return res.returncode == 0


@pytest.fixture(scope="session")
def k8s_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sApi]:
    if not _docker_works():
        if os.environ.get("PODSYNC_REQUIRE_DOCKER") == "1":
            pytest.fail("Docker is required (PODSYNC_REQUIRE_DOCKER=1) but not reachable")
        pytest.skip("no Docker engine reachable")
    api = start_k8s_api(tmp_path_factory.mktemp("k8s"))
    try:
        yield api
    finally:
        api.emulator.stop()


@pytest.fixture
def k8s(k8s_api: K8sApi) -> Iterator[K8sApi]:
    mark = len(k8s_api.created)  # pods of wider-scoped fixtures stay
    try:
        yield k8s_api
    finally:
        k8s_api.cleanup_created(mark)
        k8s_api.emulator.switches.reset()

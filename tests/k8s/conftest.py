"""Fixtures for the Kubernetes tests: ``kube`` (the real cluster kit) and ``k8s_api``/``k8s``
(the API emulator, for what a real cluster cannot be made to do).

Tests marked ``k8s`` (and the ``kube`` fixture) need the real single-node cluster kit of
``../shared/k8s`` (see tests/k8s/kit.py): they SKIP naming the reason when it is not running,
except with PODSYNC_REQUIRE_K8S=1 (CI), where they FAIL. ``kube`` is one namespace per test run,
deleted at the end, with the test images imported into the kit; ``space`` is a namespace of
its own for one test.

``k8s_api`` starts the emulator (tests/k8s_emulator: real Docker containers behind a fake API
server) on its own event loop in a background thread, writes a kubeconfig (CA data, token user,
context namespace ``default``) and removes every container it started at the end. ``k8s`` is
the same object, but deletes the pods a test created when that test ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import _require_docker
from tests.k8s import kit

from k8s_emulator.fixture import K8sApi, start_k8s_api

REQUIRE = "PODSYNC_REQUIRE_K8S"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"k8s: needs the real Kubernetes kit (fails instead of skipping when {REQUIRE}=1)",
    )


def require_k8s() -> None:
    """Skip (or fail under PODSYNC_REQUIRE_K8S=1) when the kit's cluster is unusable."""
    reason = kit.unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"Kubernetes is required ({REQUIRE}=1) but {reason}", False)
    pytest.skip(f"Kubernetes is not available: {reason}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("k8s") is not None:
        require_k8s()


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kit.Kube]:
    """One namespace of the real cluster for this test run (deleted at the end)."""
    require_k8s()
    space = kit.open_namespace(tmp_path_factory.mktemp("kube"))
    try:
        yield space
    finally:
        kit.close_namespace(space)


@pytest.fixture
def space(tmp_path: Path) -> Iterator[kit.Kube]:
    """A namespace of its own for one test (for selections that look at every pod of a
    namespace, e.g. imageName)."""
    require_k8s()
    own = kit.open_namespace(tmp_path)
    try:
        yield own
    finally:
        kit.close_namespace(own)


@pytest.fixture(scope="session")
def k8s_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sApi]:
    _require_docker()
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

"""Session-wide test plumbing: the ``docker`` marker, the test images, container fixtures.

Tests marked ``docker`` (and the fixtures below) SKIP when no Docker engine answers, except with
PODSYNC_REQUIRE_DOCKER=1 (CI), where they FAIL: CI must never go green with Docker tests skipped.
Sub-folders add their own conftest.py for their own fixtures; keep this one generic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.support` importable under plain `pytest` too
    sys.path.insert(0, str(ROOT))

from tests.support import docker as d  # noqa: E402

_images_ready: list[bool] = []


def _require_docker() -> None:
    """Skip (or fail under PODSYNC_REQUIRE_DOCKER=1) when Docker is unusable; build images."""
    reason = d.docker_unavailable_reason()
    if reason is not None:
        if os.environ.get("PODSYNC_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker is required (PODSYNC_REQUIRE_DOCKER=1) but {reason}", False)
        pytest.skip(f"Docker is not available: {reason}")
    if not _images_ready:
        d.build_images()  # idempotent: rebuilds only missing or stale images
        _images_ready.append(True)


def pytest_configure(config: pytest.Config) -> None:
    # Product code run by the tests (DockerTransport, the CLI) finds the same engine.
    host = d.docker_env().get("DOCKER_HOST")
    if host and not os.environ.get("DOCKER_HOST"):
        os.environ["DOCKER_HOST"] = host


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        _require_docker()


@pytest.fixture(scope="session")
def docker_images() -> tuple[str, ...]:
    """Ensures the test images exist (builds the missing ones); their names."""
    _require_docker()
    return d.IMAGES


@pytest.fixture(scope="session")
def docker_env() -> dict[str, str]:
    """The environment to run ``docker`` with (DOCKER_HOST set when known)."""
    _require_docker()
    return d.docker_env()


def _container(image: str) -> Iterator[str]:
    _require_docker()
    name = d.start_container(image)
    try:
        yield name
    finally:
        d.remove_container(name)


@pytest.fixture
def py_container() -> Iterator[str]:
    """A fresh running container of the python3 image (WORKDIR /app); its name."""
    yield from _container(d.PY_IMAGE)


@pytest.fixture
def busybox_container() -> Iterator[str]:
    """A fresh running container of the busybox-only image (WORKDIR /app); its name."""
    yield from _container(d.BUSYBOX_IMAGE)

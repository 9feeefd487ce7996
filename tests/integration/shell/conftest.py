"""Fixtures for the shell agent: a busybox-only container per test, and an endpoint on it.

Owns: nothing shipped. May import: the standard library, pytest, ``podsync`` and
``tests.support``. The containers come from ``busybox_container`` (tests/conftest.py):
``podsync-test-busybox`` (busybox applets only, no python), ``--network none``, WORKDIR /app.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from shell_helpers import Box
from tests.support import docker as d


@pytest.fixture
def box(busybox_container: str) -> Iterator[Box]:
    """The busybox container with an empty /app, and helpers to look inside it."""
    b = Box(busybox_container)
    b.sh("rm -rf /app && mkdir -p /app")
    yield b


@pytest.fixture
def box2() -> Iterator[Box]:
    """A second, independent busybox container (for tests that break their container)."""
    name = d.start_container(d.BUSYBOX_IMAGE)
    try:
        b = Box(name)
        b.sh("mkdir -p /app")
        yield b
    finally:
        d.remove_container(name)


@pytest.fixture
def dash_box() -> Iterator[Box]:
    """A container whose /bin/sh is dash (the host's, run on the glibc of the python test
    image): commands are looked up on PATH there, unlike busybox ash, which runs its own
    applets first. Used to plant a fake ``tar``."""
    name = d.start_container(d.PY_IMAGE)
    try:
        copied = d.docker("cp", "-L", "/bin/dash", f"{name}:/bin/dash")
        if copied.returncode != 0:
            pytest.skip("the host has no /bin/dash to plant in the container")
        linked = d.docker_exec(name, ["/bin/busybox", "ln", "-sf", "/bin/dash", "/bin/sh"])
        assert linked.returncode == 0, linked.stderr
        b = Box(name)
        b.sh("mkdir -p /app")
        yield b
    finally:
        d.remove_container(name)

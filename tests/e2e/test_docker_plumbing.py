"""The CI plumbing works: a real engine, the two test images, commands run in containers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.docker import BUSYBOX_IMAGE, PY_IMAGE, docker, docker_exec
from tests.support.wait import wait_until

AGENT_MODULES = "zipfile, zlib, hashlib, ctypes, json, selectors, threading"


@pytest.mark.docker
def test_py_container_runs_python_with_the_agents_modules(py_container: str) -> None:
    probe = (
        f"import {AGENT_MODULES}, ctypes.util, sys\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "print(sys.version_info[0], libc.getpid() > 0, zlib.decompress(zlib.compress(b'ok')))"
    )
    result = docker_exec(py_container, ["python3", "-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["3", "True", "b'ok'"]


@pytest.mark.docker
def test_busybox_container_has_the_shell_tools_but_no_python(busybox_container: str) -> None:
    script = "cd /tmp && echo hi > f && tar -cf t.tar f && find . -name f && stat -c %s f"
    result = docker_exec(busybox_container, ["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["./f", "3"]
    assert docker_exec(busybox_container, ["sh", "-c", "command -v python3"]).returncode != 0


@pytest.mark.docker
@pytest.mark.parametrize("image", [PY_IMAGE, BUSYBOX_IMAGE])
def test_images_have_workdir_app_and_no_network(image: str, docker_env: dict[str, str]) -> None:
    script = "pwd; ls /sys/class/net"
    result = docker("run", "--rm", "--network", "none", image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["/app", "lo"]


@pytest.mark.docker
def test_stdin_reaches_the_container(busybox_container: str) -> None:
    payload = bytes(range(256)) * 64
    result = docker_exec(busybox_container, ["cat"], stdin=payload)
    assert result.returncode == 0
    assert result.stdout == payload


@pytest.mark.docker
def test_pid_1_reaps_orphans(busybox_container: str) -> None:
    """A killed command's orphaned children must not linger as zombies in the test images."""
    orphan = "sh -c 'sleep 0.05 & exit 0'"
    assert docker_exec(busybox_container, ["sh", "-c", orphan]).returncode == 0

    def no_zombie() -> bool:
        states = docker_exec(busybox_container, ["ps", "-o", "stat"]).stdout.decode().split()
        return "Z" not in states

    wait_until(no_zombie, timeout=5, message="an orphan stayed a zombie")


@pytest.mark.parametrize("required", [False, True], ids=["skips", "fails-in-ci"])
def test_without_an_engine_docker_tests_skip_or_fail_when_required(required: bool) -> None:
    """CI sets PODSYNC_REQUIRE_DOCKER=1 so it can never go green with Docker tests skipped."""
    env = {k: v for k, v in os.environ.items() if k != "PODSYNC_REQUIRE_DOCKER"}
    env["DOCKER_HOST"] = "unix:///nonexistent/podsync-test.sock"
    if required:
        env["PODSYNC_REQUIRE_DOCKER"] = "1"
    root = Path(__file__).resolve().parents[2]
    test = f"{Path(__file__).relative_to(root)}::test_stdin_reaches_the_container"
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if required:
        assert ran.returncode == 1, ran.stdout
        assert "Docker is required (PODSYNC_REQUIRE_DOCKER=1) but cannot reach" in ran.stdout
    else:
        assert ran.returncode == 0, ran.stdout
        assert "1 skipped" in ran.stdout
        assert "Docker is not available: cannot reach the Docker engine" in ran.stdout

"""The CI plumbing works: a real engine, the two test images, commands run in containers."""

from __future__ import annotations

import pytest
from tests.support.docker import BUSYBOX_IMAGE, PY_IMAGE, docker, docker_exec

pytestmark = pytest.mark.docker

AGENT_MODULES = "zipfile, zlib, hashlib, ctypes, json, selectors, threading"


def test_py_container_runs_python_with_the_agents_modules(py_container: str) -> None:
    probe = (
        f"import {AGENT_MODULES}, ctypes.util, sys\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "print(sys.version_info[0], libc.getpid() > 0, zlib.decompress(zlib.compress(b'ok')))"
    )
    result = docker_exec(py_container, ["python3", "-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["3", "True", "b'ok'"]


def test_busybox_container_has_the_shell_tools_but_no_python(busybox_container: str) -> None:
    script = "cd /tmp && echo hi > f && tar -cf t.tar f && find . -name f && stat -c %s f"
    result = docker_exec(busybox_container, ["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["./f", "3"]
    assert docker_exec(busybox_container, ["sh", "-c", "command -v python3"]).returncode != 0


@pytest.mark.parametrize("image", [PY_IMAGE, BUSYBOX_IMAGE])
def test_images_have_workdir_app_and_no_network(image: str, docker_env: dict[str, str]) -> None:
    script = "pwd; ls /sys/class/net"
    result = docker("run", "--rm", "--network", "none", image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["/app", "lo"]


def test_stdin_reaches_the_container(busybox_container: str) -> None:
    payload = bytes(range(256)) * 64
    result = docker_exec(busybox_container, ["cat"], stdin=payload)
    assert result.returncode == 0
    assert result.stdout == payload

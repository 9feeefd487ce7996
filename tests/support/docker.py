"""Real Docker containers for tests: start, exec, remove.

Owns: the test images' names, the Docker engine address tests use, container helpers.
May import: the standard library. Every container runs with ``--network none`` and carries the
label ``podsync-test=1`` so a leftover can be found (``docker ps -a -f label=podsync-test=1``).
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

PY_IMAGE = "podsync-test-py:latest"
BUSYBOX_IMAGE = "podsync-test-busybox:latest"
IMAGES = (PY_IMAGE, BUSYBOX_IMAGE)
LABEL = "podsync-test=1"
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "images" / "build.sh"
#: The dev machine's engine; used when DOCKER_HOST is not set.
FALLBACK_SOCKET = Path("/tmp/podsync-docker/docker.sock")
#: A docker CLI call that takes longer than this means the engine is wedged.
CLI_TIMEOUT = 60.0


def docker_env() -> dict[str, str]:
    """The environment for docker commands: ours, plus DOCKER_HOST when we know a better one."""
    env = dict(os.environ)
    if not env.get("DOCKER_HOST") and FALLBACK_SOCKET.is_socket():
        env["DOCKER_HOST"] = f"unix://{FALLBACK_SOCKET}"
    return env


def docker(
    *args: str, stdin: bytes = b"", timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run ``docker ARGS`` to completion, output captured, never raising on exit codes."""
    return subprocess.run(
        ["docker", *args],
        input=stdin,
        capture_output=True,
        env=docker_env(),
        timeout=timeout,
        check=False,
    )


@functools.cache
def docker_unavailable_reason() -> str | None:
    """Why Docker cannot be used (one line), or None when the engine answers."""
    try:
        result = docker("version", "--format", "{{.Server.Version}}", timeout=20.0)
    except FileNotFoundError:
        return "the docker CLI is not installed"
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        return f"cannot reach the Docker engine: {lines[-1]}"
    return None


def docker_available() -> bool:
    """True when a Docker engine answers."""
    return docker_unavailable_reason() is None


def missing_images() -> list[str]:
    """The test images not present in the engine."""
    return [image for image in IMAGES if docker("image", "inspect", image).returncode != 0]


def build_images(force: bool = False) -> None:
    """Run tests/images/build.sh (it skips images that exist unless ``force``)."""
    argv = ["bash", str(BUILD_SCRIPT), *(["--force"] if force else [])]
    result = subprocess.run(argv, capture_output=True, env=docker_env(), timeout=600, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise RuntimeError(f"building the test images failed:\n{output}")


def start_container(
    image: str,
    *,
    name: str | None = None,
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Start ``image`` detached with no network; the container's name."""
    name = name or f"podsync-test-{uuid.uuid4().hex[:10]}"
    argv = ["run", "-d", "--network", "none", "--label", LABEL, "--name", name]
    if workdir is not None:
        argv += ["--workdir", workdir]
    for key, value in (env or {}).items():
        argv += ["--env", f"{key}={value}"]
    result = docker(*argv, image)
    if result.returncode != 0:
        raise RuntimeError(
            f"docker run {image} failed: {result.stderr.decode(errors='replace').strip()}"
        )
    return name


def remove_container(name: str) -> None:
    """Remove the container and its anonymous volumes; a missing one is fine."""
    docker("rm", "-f", "-v", name)


def docker_exec(
    name: str, argv: Sequence[str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` in the container to completion, stdin fed, output captured."""
    return docker("exec", "-i", name, *argv, stdin=stdin)

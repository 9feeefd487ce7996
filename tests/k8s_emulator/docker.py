"""Docker CLI access for the Kubernetes API emulator.

Owns: running ``docker`` commands asynchronously, naming the containers that back pods, and
making sure the test images exist. May import: the standard library and aiohttp.

The emulator drives the real Docker engine (``DOCKER_HOST``) through the ``docker`` CLI, the
same way a kubelet drives a container runtime: one container per pod container, always
``--network none``.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

#: Label put on every container the emulator starts; its value is the emulator instance id.
INSTANCE_LABEL = "podsync.k8s-emulator"

#: Command given to a pod container whose spec has none and whose image has no CMD: keeps it
#: alive like a long-running server would.
KEEPALIVE = ("sh", "-c", "while :; do sleep 3600; done")

PY_IMAGE = "podsync-test-py:latest"
BUSYBOX_IMAGE = "podsync-test-busybox:latest"
SHELL_LESS_IMAGE = "podsync-test-shell-less:latest"


@dataclass(frozen=True)
class DockerResult:
    returncode: int
    stdout: str
    stderr: str


async def docker(*args: str, stdin: bytes | None = None) -> DockerResult:
    """Run ``docker ARGS`` to completion."""
    proc = await asyncio.create_subprocess_exec(
        "docker",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return DockerResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def container_name(namespace: str, pod: str, container: str) -> str:
    """The Docker name of a pod container, as dockershim named them."""
    return f"k8s_{namespace}_{pod}_{container}"


def image_exists(image: str) -> bool:
    res = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        check=False,
    )
    return res.returncode == 0


def remove_instance_containers(instance: str) -> None:
    """Force-remove every container labelled with this emulator instance (sync: used at exit)."""
    res = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={INSTANCE_LABEL}={instance}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = res.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def _busybox_rootfs_tar(busybox: Path) -> bytes:
    """A minimal root filesystem: static busybox plus its applet links, /tmp and /root."""
    buf = io.BytesIO()
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d, mode in (("bin", 0o755), ("tmp", 0o1777), ("root", 0o700), ("etc", 0o755)):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def ensure_test_images(repo_root: Path) -> list[str]:
    """Make sure the test images exist; returns the ones available.

    Runs the project's ``tests/images/build.sh`` (idempotent: it rebuilds only stale images);
    when that is missing or fails, builds the busybox image from the host's static busybox
    with ``docker import`` (images cannot be pulled here).
    """
    build = repo_root / "tests" / "images" / "build.sh"
    if build.is_file():
        subprocess.run(["bash", str(build)], capture_output=True, check=False, env=docker_env())
    if not image_exists(BUSYBOX_IMAGE):
        busybox = shutil.which("busybox")
        if busybox is not None:
            subprocess.run(
                ["docker", "import", "--change", "WORKDIR /root", "-", BUSYBOX_IMAGE],
                input=_busybox_rootfs_tar(Path(busybox)),
                capture_output=True,
                check=False,
            )
    return [img for img in (PY_IMAGE, BUSYBOX_IMAGE, SHELL_LESS_IMAGE) if image_exists(img)]


def docker_env() -> dict[str, str]:
    """Environment for docker subprocesses (DOCKER_HOST defaults to the project's engine)."""
    env = dict(os.environ)
    env.setdefault("DOCKER_HOST", "unix:///tmp/podsync-docker/docker.sock")
    return env


def exec_argv(container: str, command: Sequence[str], stdin: bool) -> list[str]:
    """``docker exec`` argv running ``command`` in ``container``."""
    return ["docker", "exec", *(["-i"] if stdin else []), container, *command]


async def log_stream(
    container: str, follow: bool, tail: str | None, timestamps: bool
) -> AsyncIterator[bytes]:
    """A container's stdout and stderr interleaved in the order they were logged.

    Uses the Engine API on DOCKER_HOST's unix socket: ``docker logs`` splits the two streams
    into separate pipes and loses their relative order, which kubectl users rely on."""
    host = docker_env()["DOCKER_HOST"]
    if not host.startswith("unix://"):
        raise RuntimeError(f"the emulator needs a unix:// DOCKER_HOST, not {host}")
    query = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0"}
    query |= {"timestamps": "1" if timestamps else "0", "tail": tail or "all"}
    connector = aiohttp.UnixConnector(path=host[len("unix://") :])
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get(f"http://docker/containers/{container}/logs", params=query) as resp,
    ):
        if resp.status != 200:
            yield (await resp.read())
            return
        while True:
            try:
                header = await resp.content.readexactly(8)
            except asyncio.IncompleteReadError:
                return
            size = int.from_bytes(header[4:8], "big")
            yield await resp.content.readexactly(size)

"""LocalTransport and DockerTransport against real processes and real containers."""

from __future__ import annotations

import asyncio
import io
import random
import shutil
import subprocess
import tarfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from tests.support.docker import docker, docker_exec, remove_container, start_container

from podsync.errors import TransportError
from podsync.transport.base import Channel, Transport
from podsync.transport.docker import DockerTransport
from podsync.transport.local import LocalTransport
from podsync.transport.ssh import SshTransport

T = TypeVar("T")
MIB = 1 << 20


def arun(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@pytest.fixture(params=["local", "docker-py", "docker-busybox"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Transport:
    if request.param == "local":
        return LocalTransport(tmp_path)
    request.applymarker(pytest.mark.docker)
    fixture = "py_container" if request.param == "docker-py" else "busybox_container"
    return DockerTransport(request.getfixturevalue(fixture))


async def pump(channel: Channel, payload: bytes, chunk: int = 64 * 1024) -> bytes:
    """Write ``payload`` while reading the echo concurrently (a pipe deadlocks otherwise)."""

    async def writer() -> None:
        view = memoryview(payload)
        for at in range(0, len(view), chunk):
            await channel.write(bytes(view[at : at + chunk]))
        await channel.close_stdin()

    async def reader() -> bytes:
        got = bytearray()
        while data := await channel.read(256 * 1024):
            got += data
        return bytes(got)

    _, echoed = await asyncio.gather(writer(), reader())
    return echoed


def test_eight_mib_of_random_bytes_round_trip_through_cat(transport: Transport) -> None:
    payload = random.Random(7).randbytes(8 * MIB)

    async def go() -> tuple[bytes, int]:
        channel = await transport.spawn(["cat"], lambda line: None)
        echoed = await pump(channel, payload)
        return echoed, await channel.wait()

    echoed, code = arun(go)
    assert code == 0
    assert len(echoed) == len(payload)
    assert echoed == payload


def test_run_returns_exit_code_stdout_and_stderr(transport: Transport) -> None:
    result = arun(lambda: transport.run(["sh", "-c", "cat; echo oops >&2; exit 3"], b"in\x00put"))
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"in\x00put", b"oops\n")
    assert arun(lambda: transport.run(["true"])).exit_code == 0


def test_run_of_a_missing_command_is_an_exit_code_not_an_error(transport: Transport) -> None:
    result = arun(lambda: transport.run(["sh", "-c", "no-such-command-here"]))
    assert result.exit_code == 127


def test_stderr_lines_reach_the_sink_in_order(transport: Transport) -> None:
    lines: list[str] = []

    async def go() -> int:
        script = "echo one >&2; printf 'two\\r\\n' >&2; echo out; printf three >&2"
        channel = await transport.spawn(["sh", "-c", script], lines.append)
        assert await channel.read(100) == b"out\n"
        return await channel.wait()

    assert arun(go) == 0
    assert lines == ["one", "two", "three"]


def test_workdir(transport: Transport, tmp_path: Path) -> None:
    expected = str(tmp_path) if isinstance(transport, LocalTransport) else "/app"
    assert arun(transport.workdir) == expected


def test_run_timeout_raises_and_leaves_no_process(transport: Transport) -> None:
    marker = str(random.randrange(10**8, 10**9))
    with pytest.raises(TransportError, match=r"did not finish within 0\.5 s"):
        arun(lambda: transport.run(["sleep", marker], timeout=0.5))
    assert marker not in arun(lambda: transport.run(["ps", "-o", "args"])).stdout.decode()


@pytest.mark.parametrize("ignore_term", [False, True], ids=["sleep", "ignores-TERM"])
def test_kill_leaves_no_process_behind(transport: Transport, ignore_term: bool) -> None:
    marker = str(random.randrange(10**8, 10**9))
    trap = "trap '' TERM; " if ignore_term else ""
    script = f"{trap}sleep {marker} & sleep {marker}; wait"

    async def processes() -> str:
        return (await transport.run(["ps", "-o", "args"])).stdout.decode()

    async def go() -> None:
        channel = await transport.spawn(["sh", "-c", script], lambda line: None)
        deadline = asyncio.get_running_loop().time() + 10
        while (await processes()).count(f"sleep {marker}") < 2:  # both sleeps started
            assert asyncio.get_running_loop().time() < deadline, "sleep never started"
            await asyncio.sleep(0.01)
        await channel.kill()
        await channel.kill()  # safe twice
        assert await channel.wait() != 0
        # The command and its background child (same process group) are gone.
        assert marker not in await processes()

    arun(go)


@pytest.mark.docker
def test_kill_waits_until_the_far_side_process_is_gone(busybox_container: str) -> None:
    transport = DockerTransport(busybox_container)
    marker = str(random.randrange(10**8, 10**9))

    async def go() -> None:
        channel = await transport.spawn(["sleep", marker], lambda line: None)
        await channel.kill()

    arun(go)
    assert marker not in docker_exec(busybox_container, ["ps", "-o", "args"]).stdout.decode()


@pytest.mark.docker
def test_missing_container_is_one_clear_line() -> None:
    transport = DockerTransport("podsync-test-no-such-container")
    expected = "container podsync-test-no-such-container is not running: no such container"
    for call in (
        lambda: transport.run(["true"]),
        lambda: transport.spawn(["cat"], lambda line: None),
        transport.workdir,
    ):
        with pytest.raises(TransportError) as info:
            arun(call)
        assert str(info.value) == expected


@pytest.mark.docker
def test_stopped_container_is_not_running(busybox_container: str) -> None:
    assert docker("kill", busybox_container).returncode == 0
    transport = DockerTransport(busybox_container)
    for call in (lambda: transport.run(["true"]), lambda: transport.spawn(["cat"], print)):
        with pytest.raises(TransportError) as info:
            arun(call)
        assert str(info.value) == f"container {busybox_container} is not running"


@pytest.mark.docker
def test_unreachable_engine_and_missing_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = DockerTransport("anything", docker="/nonexistent/docker")
    with pytest.raises(TransportError, match=r"^docker is not installed \(no `/nonexistent"):
        arun(lambda: missing.run(["true"]))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/podsync.sock")
    with pytest.raises(TransportError, match=r"^cannot reach the Docker engine: .*nonexistent"):
        arun(lambda: DockerTransport("anything").run(["true"]))


@pytest.fixture
def shell_less_container(tmp_path: Path) -> Iterator[str]:
    """A container whose image has no sh: busybox as /busybox, no applet links."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    image = "podsync-test-shell-less:latest"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(busybox, arcname="busybox")
        for folder in ("app", "proc", "sys", "dev", "tmp"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    imported = docker(
        "import", "--change", "WORKDIR /app", "--change", 'CMD ["/busybox", "sleep", "2147483647"]',
        "-", image, stdin=archive.getvalue(),
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    name = start_container(image)
    try:
        yield name
    finally:
        remove_container(name)


@pytest.mark.docker
def test_an_image_without_sh_still_works_unwrapped(shell_less_container: str) -> None:
    transport = DockerTransport(shell_less_container)
    result = arun(lambda: transport.run(["/busybox", "cat"], b"no shell"))
    assert (result.exit_code, result.stdout) == (0, b"no shell")

    async def go() -> bytes:
        channel = await transport.spawn(["/busybox", "cat"], lambda line: None)
        echoed = await pump(channel, b"x" * MIB)
        await channel.kill()
        return echoed

    assert arun(go) == b"x" * MIB


def test_local_missing_program_is_one_line(tmp_path: Path) -> None:
    transport = LocalTransport(tmp_path)
    with pytest.raises(TransportError, match="no-such-program-x is not installed"):
        arun(lambda: transport.spawn(["no-such-program-x"], print))


def test_ssh_quotes_argv_once_for_the_remote_shell() -> None:
    argv = ["printf", "%s|", "a b", "it's", "$HOME", "*", ""]
    remote = SshTransport("user@host").client_argv(argv)
    assert remote[:-1] == [
        "ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=4", "user@host", "--",
    ]  # fmt: skip
    # What sshd does with the command string: hand it to the login shell.
    ran = subprocess.run(["sh", "-c", remote[-1]], capture_output=True, check=True)
    assert ran.stdout == b"a b|it's|$HOME|*||"


class _ClosedPortSsh(SshTransport):
    """The real ssh client, pointed at a closed loopback port (nothing leaves 127.0.0.0/8)."""

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        full = super().client_argv(argv)
        return [full[0], "-p", "1", *full[1:]]


def test_ssh_connection_failure_is_one_line() -> None:
    if shutil.which("ssh") is None:
        pytest.skip("ssh is not installed")
    transport = _ClosedPortSsh("127.0.0.1")
    with pytest.raises(TransportError, match=r"^cannot reach 127\.0\.0\.1 over ssh: .*refused"):
        arun(lambda: transport.run(["true"]))
    with pytest.raises(TransportError, match=r"^cannot reach 127\.0\.0\.1 over ssh: "):
        arun(lambda: transport.spawn(["cat"], print))


def test_writing_to_a_command_that_exited_is_a_transport_error(transport: Transport) -> None:
    async def go() -> None:
        channel = await transport.spawn(["sh", "-c", "exit 4"], lambda line: None)
        assert await channel.wait() == 4
        with pytest.raises(TransportError, match=r"stopped reading|input is closed"):
            for _ in range(64):  # the first writes may only fill the pipe's buffer
                await channel.write(b"x" * 65536)
        await channel.kill()

    arun(go)

"""End-to-end harness: a running ``podsync sync`` process and the far side's files.

Owns: :class:`SyncProcess` (the real CLI in a subprocess, stopped with SIGINT) and the
``Far`` sides (a Docker container through ``docker exec``, or a plain local folder), so one
suite runs against every target and agent.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.support.docker import docker, docker_env
from tests.support.wait import wait_until


class SyncProcess:
    """``python -m podsync sync ARGS`` running in the background, output collected."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self.cwd = cwd
        env = docker_env()
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "podsync", "sync", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, needle: str, timeout: float = 30.0) -> None:
        wait_until(
            lambda: needle in self.output or self.proc.poll() is not None,
            timeout,
            message=f"{needle!r} never printed; output:\n{self.output}",
        )
        assert needle in self.output, f"podsync exited ({self.proc.returncode}):\n{self.output}"

    def wait_watching(self, timeout: float = 60.0) -> None:
        """Until the initial sync is over and both watchers run."""
        self.wait_for_output("watching for changes", timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"podsync did not stop on {sig}:\n{self.output}") from None
        self._reader.join(5)
        return self.proc.returncode

    def finish(self, timeout: float = 120.0) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"podsync did not finish:\n{self.output}") from None
        self._reader.join(5)
        return self.proc.returncode


class Far:
    """The far side's folder, as the test sees it (not through podsync)."""

    root: str

    def write(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def read(self, path: str) -> bytes | None:
        raise NotImplementedError

    def sh(self, script: str) -> str:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        return self.sh(f"[ -e {shlex.quote(self.root + '/' + path)} ] && echo yes || true") == "yes"

    def listing(self) -> set[str]:
        out = self.sh(f"cd {shlex.quote(self.root)} && find . -mindepth 1")
        return {line[2:] for line in out.splitlines() if line}


@dataclass
class DockerFar(Far):
    container: str
    root: str = "/app"

    def sh(self, script: str) -> str:
        result = docker("exec", self.container, "sh", "-c", script)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode().strip()

    def write(self, path: str, data: bytes) -> None:
        target = shlex.quote(f"{self.root}/{path}")
        script = f'mkdir -p "$(dirname {target})" && cat > {target}'
        result = docker("exec", "-i", self.container, "sh", "-c", script, stdin=data)
        assert result.returncode == 0, result.stderr.decode()

    def read(self, path: str) -> bytes | None:
        result = docker("exec", self.container, "cat", f"{self.root}/{path}")
        return result.stdout if result.returncode == 0 else None


@dataclass
class LocalFar(Far):
    root: str

    def sh(self, script: str) -> str:
        result = subprocess.run(["sh", "-c", script], capture_output=True, check=True)
        return result.stdout.decode().strip()

    def write(self, path: str, data: bytes) -> None:
        target = Path(self.root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def read(self, path: str) -> bytes | None:
        try:
            return Path(self.root, path).read_bytes()
        except OSError:
            return None


def read_local(root: Path, path: str) -> bytes | None:
    try:
        return (root / path).read_bytes()
    except OSError:
        return None


def agent_processes(container: str) -> list[str]:
    """Lines of `ps` in the container that are podsync agent processes."""
    out = docker("exec", container, "ps", "-o", "pid,args").stdout.decode()
    return [line for line in out.splitlines() if "agent-" in line or "podsync" in line]

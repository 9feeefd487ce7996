"""An external probe of sync latency, on the test's own clock (issue 10, part 4).

Owns: :class:`ContainerProbe` (one long-running ``sh`` in a container, driven over an exec
channel: ``docker exec -i`` or ``kubectl exec -i``), the two measurements (local save -> file
in the container; container write -> file here) and the engine's figures from the status
file. May import: the standard library, ``podsync.engine`` (latency, status), ``tests.support``.

The probe starts before the save and ends when the file is seen on the other side, polled
about every millisecond (in the container by a ``sh`` loop that prints each name once its
file exists, stamped by the test as the line arrives; locally by the test itself). The
tolerance against the engine's figures is stated in tests/e2e/test_latency.py.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.wait import wait_until

from podsync.engine.latency import percentile
from podsync.engine.status import read_status, status_path

#: A save must show on the other side within this long (a deadline, not a pause).
SAVE_DEADLINE = 20.0

WATCH = 'while read n; do while [ ! -e "$n" ]; do sleep 0.001; done; echo "$n"; done'
WRITE = 'while read n; do echo "$n" > "$n" && echo "$n"; done'


class ContainerProbe:
    """One ``sh`` running ``script`` in ``root`` through ``exec_argv`` (the exec command up to
    the program, stdin attached), fed names on stdin; each line it prints is stamped as it
    arrives. ``WATCH``: a name's line comes once its file exists. ``WRITE``: it writes the
    file, then prints."""

    def __init__(
        self, exec_argv: Sequence[str], script: str, env: Mapping[str, str], root: str = "/app"
    ) -> None:
        self.proc = subprocess.Popen(
            [*exec_argv, "sh", "-c", f"cd '{root}' && {script}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(env),
            bufsize=0,
        )
        self.lines: queue.Queue[tuple[str, float]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put((raw.decode().strip(), time.monotonic()))

    def send(self, name: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(name.encode() + b"\n")

    def line(self, name: str) -> float:
        """When the line for ``name`` arrived (AssertionError after SAVE_DEADLINE)."""
        while True:
            try:
                got, at = self.lines.get(timeout=SAVE_DEADLINE)
            except queue.Empty:
                raise AssertionError(f"the container never showed {name}") from None
            if got == name:
                return at

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def external_up(workdir: Path, probe: ContainerProbe, names: list[str]) -> list[float]:
    """Seconds from each local save to the file existing in the container (a WATCH probe)."""
    out = []
    for name in names:
        probe.send(name)
        start = time.monotonic()
        (workdir / name).write_text(f"{name}\n")
        out.append(probe.line(name) - start)
    return out


def external_down(workdir: Path, writer: ContainerProbe, names: list[str]) -> list[float]:
    """Seconds from asking the container to write each file (a WRITE probe) to it existing
    locally."""
    out = []
    for name in names:
        start = time.monotonic()
        writer.send(name)
        wait_until(
            (workdir / name).exists,
            SAVE_DEADLINE,
            interval=0.001,
            message=f"{name} never appeared locally",
        )
        out.append(time.monotonic() - start)
        writer.line(name)
    return out


def engine_figures(workdir: Path, direction: str, count: int) -> dict[str, Any]:
    """The first sync's ``latency`` object once it has measured ``count`` changes of
    ``direction`` (read from the status file, as ``status sync --json`` does)."""
    path = status_path(workdir / ".devspace")
    found: dict[str, Any] = {}

    def measured() -> bool:
        status = read_status(path)
        latency = status.syncs[0].latency if status is not None and status.syncs else None
        found.clear()
        found.update(latency or {})
        return bool((found.get(direction) or {}).get("count", 0) >= count)

    wait_until(measured, 15, message=f"the engine never measured {count} {direction} changes")
    return found


def p50_ms(samples: list[float]) -> float:
    return percentile(sorted(samples), 0.5) * 1000

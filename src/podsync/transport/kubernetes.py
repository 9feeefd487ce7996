"""Commands in a Kubernetes pod container: WebSocket exec, with ``kubectl exec -i`` as fallback.

Owns: :class:`KubernetesTransport` (the :class:`~podsync.transport.base.Transport` for one
pod container), the choice between WebSocket exec and ``kubectl exec -i``
(``PODSYNC_K8S_EXEC=auto|websocket|kubectl``). Which pod to open it on is ``k8s_target``'s.
May import: the standard library, ``podsync.errors`` and ``podsync.transport``. Knows nothing
of sync.

Commands run behind the same PID-announcing ``sh`` wrapper as the docker and ssh transports:
closing an exec stream does not end the command in the container, so ``kill()`` ends it by
PID through a second exec. In ``auto`` mode a refused WebSocket upgrade (HTTP 400/403, a proxy
without WebSocket support) switches this transport to ``kubectl exec -i`` for good, when kubectl
is on PATH; errors that kubectl would hit too (unauthorized, pod or container not found, no
connection) are raised as one-line TransportErrors instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from typing import Literal

from podsync.errors import TransportError, UsageError
from podsync.transport.base import RunResult, StderrSink
from podsync.transport.k8s_exec import (
    ExecTarget,
    KubectlExecTransport,
    UpgradeRefused,
    WebSocketExecChannel,
    dial_exec,
    read_workdir,
)
from podsync.transport.kubeconfig import ApiAccess
from podsync.transport.process import ProcessChannel
from podsync.transport.wrapped import KILL_SCRIPT, START_TIMEOUT_SECONDS, last_line, split_pid, wrap

log = logging.getLogger(__name__)

ExecMode = Literal["auto", "websocket", "kubectl"]
MODE_ENV = "PODSYNC_K8S_EXEC"
KILL_TIMEOUT_SECONDS = 15.0


def exec_mode(value: str | None = None) -> ExecMode:
    """The exec mode from ``value`` or ``$PODSYNC_K8S_EXEC`` (default ``auto``)."""
    raw = (value if value is not None else os.environ.get(MODE_ENV, "")).strip().lower() or "auto"
    if raw == "auto":
        return "auto"
    if raw == "websocket":
        return "websocket"
    if raw == "kubectl":
        return "kubectl"
    raise UsageError(f"{MODE_ENV} must be auto, websocket or kubectl, not {raw!r}")


class _StartupLines:
    """Stderr sink that holds lines until the command has started (they explain a failed
    start), then passes them on. A flood of lines means the start worked: release early."""

    HOLD = 200

    def __init__(self, target: StderrSink) -> None:
        self.target = target
        self.lines: list[str] = []
        self.released = False

    def __call__(self, line: str) -> None:
        if self.released:
            self.target(line)
            return
        self.lines.append(line)
        if len(self.lines) >= self.HOLD:
            self.release()

    def release(self) -> None:
        self.released = True
        held, self.lines = self.lines, []
        for line in held:
            with contextlib.suppress(Exception):
                self.target(line)

    def text(self) -> str:
        return "\n".join(self.lines)


class KubernetesTransport:
    """Runs commands in ``container`` of ``pod`` in ``namespace`` through the API server."""

    def __init__(
        self,
        pod: str,
        container: str,
        namespace: str,
        api: ApiAccess,
        mode: ExecMode | None = None,
        kubectl: str = "kubectl",
    ) -> None:
        self.target = ExecTarget(namespace=namespace, pod=pod, container=container)
        self.api = api
        self.mode: ExecMode = mode or exec_mode()
        self.description = self.target.describe()
        #: Unknown: depends on the cluster's distance; the engine decides about compression.
        self.link_bytes_per_second: float | None = None
        self._kubectl_path = kubectl
        self._kubectl: KubectlExecTransport | None = None
        self._shell: bool | None = None  # False: no sh in the container (run unwrapped)
        self._v5: bool | None = None  # learned from the first connection
        #: Seconds spent reaching the pod, for sync.log: ``kubeconfig`` and ``select`` (the
        #: API requests choosing the pod, waiting included; set by k8s_target), ``exec_dial``
        #: (the last exec's TLS + WebSocket upgrade, until the command runs).
        self.phase_seconds: dict[str, float] = {}

    # -- choosing the path ----------------------------------------------------------------
    @property
    def using_kubectl(self) -> bool:
        return self.mode == "kubectl" or (self._kubectl is not None and self.mode == "auto")

    def _fallback(self) -> KubectlExecTransport:
        if self._kubectl is None:
            self._kubectl = KubectlExecTransport(self.target, self.api.context, self._kubectl_path)
        return self._kubectl

    def _refused(self, exc: UpgradeRefused) -> KubectlExecTransport:
        """Switch to kubectl after a refused upgrade, or raise when that is not allowed."""
        if self.mode == "websocket" or shutil.which(self._kubectl_path) is None:
            raise TransportError(str(exc)) from exc
        log.warning("%s; falling back to kubectl exec -i", exc)
        return self._fallback()

    # -- Transport --------------------------------------------------------------------------
    async def spawn(
        self, argv: Sequence[str], stderr: StderrSink
    ) -> WebSocketExecChannel | ProcessChannel:
        if self.using_kubectl:
            return await self._fallback().spawn(argv, stderr)
        try:
            return await self._spawn_ws(argv, stderr)
        except UpgradeRefused as exc:
            return await self._refused(exc).spawn(argv, stderr)

    async def run(
        self, argv: Sequence[str], stdin: bytes = b"", timeout: float = 60.0
    ) -> RunResult:
        if self.using_kubectl:
            return await self._fallback().run(argv, stdin, timeout)
        try:
            return await self._run_ws(argv, stdin, timeout)
        except UpgradeRefused as exc:
            return await self._refused(exc).run(argv, stdin, timeout)

    async def workdir(self) -> str:
        return await read_workdir(self.run, self.description)

    # -- WebSocket path ---------------------------------------------------------------------
    async def _open(
        self, argv: Sequence[str], sink: StderrSink, stdin: bool
    ) -> WebSocketExecChannel:
        started = time.perf_counter()
        ws = await dial_exec(self.api, self.target, argv, stdin)
        self.phase_seconds["exec_dial"] = time.perf_counter() - started
        channel = WebSocketExecChannel(ws, sink, self.description)
        self._v5 = channel.v5
        return channel

    async def kill_remote(self, pid: int) -> None:
        """End process ``pid`` in the container: TERM, grace, KILL, wait until reaped."""
        await self._run_ws(["sh", "-c", KILL_SCRIPT, "sh", str(pid)], b"", KILL_TIMEOUT_SECONDS,
                           wrapped=False)  # fmt: skip

    async def _spawn_ws(self, argv: Sequence[str], stderr: StderrSink) -> WebSocketExecChannel:
        if self._shell is False:
            return await self._open(argv, stderr, stdin=True)
        startup = _StartupLines(stderr)
        channel = await self._open(wrap(argv), startup, stdin=True)
        try:
            line = await asyncio.wait_for(channel.read_line(), START_TIMEOUT_SECONDS)
        except TimeoutError:
            await channel.kill()
            raise TransportError(
                f"{self.description}: {argv[0]} did not start within {START_TIMEOUT_SECONDS:g} s"
            ) from None
        except BaseException:
            await channel.kill()
            raise
        found = split_pid(line)
        if found is None:
            code = await channel.wait()
            await channel.kill()
            if code in (126, 127) and "sh" in startup.text():
                self._shell = False
                return await self._open(argv, stderr, stdin=True)
            why = last_line(startup.text(), f"exit code {code}")
            raise TransportError(f"{self.description}: cannot run {argv[0]}: {why}")
        self._shell = True
        pid = found[0]
        channel.set_remote_kill(lambda: self.kill_remote(pid))
        startup.release()
        return channel

    async def _run_ws(
        self, argv: Sequence[str], stdin: bytes, timeout: float, wrapped: bool = True
    ) -> RunResult:
        command = list(argv)
        wrapped = wrapped and self._shell is not False
        if stdin and self._v5 is None:
            await self._run_ws(["true"], b"", timeout, wrapped=False)  # learn the protocol
        if stdin and self._v5 is False:
            # v4 cannot signal end of input: let the command read exactly len(stdin) bytes.
            command = ["sh", "-c", 'head -c "$0" | "$@"', str(len(stdin)), *command]
        if wrapped:
            command = wrap(command)
        lines: list[str] = []
        channel = await self._open(command, lines.append, stdin=bool(stdin))
        out = bytearray()

        async def collect() -> int:
            while chunk := await channel.read(1 << 20):
                out.extend(chunk)
            return await channel.wait()

        async def feed() -> None:
            if stdin:
                with contextlib.suppress(TransportError):
                    await channel.write(stdin)
                    await channel.close_stdin()

        try:
            _, code = await asyncio.wait_for(asyncio.gather(feed(), collect()), timeout)
        except TimeoutError:
            found = split_pid(bytes(out)) if wrapped else None
            if found is not None:
                with contextlib.suppress(Exception):
                    await self.kill_remote(found[0])
            raise TransportError(
                f"{self.description}: {argv[0]} did not finish within {timeout:g} s"
            ) from None
        finally:
            await channel.kill()
        text = "\n".join(lines)
        err = (text + "\n").encode() if lines else b""
        if not wrapped:
            return RunResult(exit_code=code, stdout=bytes(out), stderr=err)
        found = split_pid(bytes(out))
        if found is None:
            if code in (126, 127) and "sh" in text:
                self._shell = False
                return await self._run_ws(argv, stdin, timeout, wrapped=False)
            why = last_line(text, f"exit code {code}")
            raise TransportError(f"{self.description}: cannot run {argv[0]}: {why}")
        self._shell = True
        return RunResult(exit_code=code, stdout=found[1], stderr=err)

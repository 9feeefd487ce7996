"""Kubernetes exec over WebSocket, framed by hand so bulk data streams with bounded memory;
and ``kubectl exec -i``, the fallback when the upgrade is refused.

Owns: :func:`dial_exec` (the WebSocket upgrade of ``pods/{name}/exec``, offering
``v5.channel.k8s.io`` then ``v4.channel.k8s.io``), :class:`WebSocketExecChannel` (a
:class:`~podsync.transport.base.Channel` over that socket), the classification of failed
upgrades, :class:`KubectlExecTransport` and :func:`read_workdir`. May import: the standard
library, ``websockets``, ``podsync.errors`` and ``podsync.transport`` (base, process,
kubeconfig, k8s_rest).

Why not the client's ``stream()``: it buffers every byte of output in memory and moved about
2 MB/s here. Wire format: every binary message starts with a channel byte, 0 stdin, 1 stdout,
2 stderr, 3 error (a ``Status`` JSON when the command ends; a non-zero exit code is in
``details.causes[reason=ExitCode]``), 4 resize. v5 adds channel 255: ``[255, 0]`` closes the
command's stdin. v4 has no way to close stdin: ``close_stdin`` is then a no-op, the command
sees EOF only when the connection closes (the agent's idle timeout covers that case).

Memory stays bounded: ``write`` sends at most ``STDIN_CHUNK`` bytes per message and waits for
the socket's write buffer to drain; the receive side keeps at most ``STDOUT_QUEUE`` messages
(plus websockets' own ``max_queue``) before it stops reading, so TCP pushes back on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from podsync.errors import TransportError
from podsync.transport.base import RunResult, StderrSink
from podsync.transport.k8s_rest import proxy_for
from podsync.transport.kubeconfig import ApiAccess
from podsync.transport.wrapped import WrappedExecTransport, last_line

SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
V5 = "v5.channel.k8s.io"
STDIN_CHUNK = 256 * 1024
STDOUT_QUEUE = 16
#: A stderr "line" longer than this is delivered in pieces (memory stays bounded).
MAX_STDERR_LINE = 1 << 16
#: Bytes the socket may buffer before ``write`` waits: a few messages in flight keep the pipe
#: full without letting memory grow.
WRITE_LIMIT = 1 << 20
MAX_MESSAGE = 16 << 20
OPEN_TIMEOUT_SECONDS = 30.0
REMOTE_KILL_TIMEOUT_SECONDS = 15.0
USER_AGENT = "podsync/0.1 (websocket exec)"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


class UpgradeRefused(TransportError):
    """The server (or a proxy) would not upgrade to WebSocket; ``kubectl exec`` may still work."""


@dataclass(frozen=True)
class ExecTarget:
    namespace: str
    pod: str
    container: str

    def describe(self) -> str:
        return f"pod {self.namespace}/{self.pod}:{self.container}"


def exec_url(host: str, target: ExecTarget, argv: Sequence[str], stdin: bool) -> str:
    query = [("command", arg) for arg in argv]
    query += [("container", target.container), ("stdout", "true"), ("stderr", "true")]
    if stdin:
        query.append(("stdin", "true"))
    base = host.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    ns, pod = (urllib.parse.quote(x, safe="") for x in (target.namespace, target.pod))
    return f"{base}/api/v1/namespaces/{ns}/pods/{pod}/exec?{urllib.parse.urlencode(query)}"


def _status_message(body: bytes) -> str:
    try:
        status = json.loads(body)
        return str(status.get("message") or status.get("reason") or "").strip()
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace").strip()[:200]


def classify_refusal(
    access: ApiAccess, target: ExecTarget, code: int, body: bytes
) -> TransportError:
    """One clear line for a failed upgrade; :class:`UpgradeRefused` when kubectl might work."""
    msg = _status_message(body)
    if code == 401:
        ctx = f" (context {access.context})" if access.context else ""
        return TransportError(
            f"unauthorized: the Kubernetes API at {access.host} rejected the credentials{ctx}"
        )
    if code == 404 and "not found" in msg:
        return TransportError(f"pod {target.namespace}/{target.pod} not found")
    low = msg.lower()
    if code == 400 and ("is not valid for pod" in low or "container not found" in low):
        return TransportError(
            f"container {target.container} not found in pod {target.namespace}/{target.pod}: {msg}"
        )
    return UpgradeRefused(
        f"{target.describe()}: WebSocket exec refused (HTTP {code}: {msg or 'no reason given'})"
    )


async def dial_exec(
    access: ApiAccess, target: ExecTarget, argv: Sequence[str], stdin: bool
) -> ClientConnection:
    """Open the exec WebSocket for ``argv``; TransportError (or UpgradeRefused) on failure.

    A 401 with an exec-credential plugin renews the credential and dials once more."""
    try:
        return await _dial(access, target, argv, stdin)
    except _Unauthorized:
        if access.plugin is None:
            raise
        await asyncio.to_thread(access.refresh)
        return await _dial(access, target, argv, stdin)


class _Unauthorized(TransportError):
    pass


async def _dial(
    access: ApiAccess, target: ExecTarget, argv: Sequence[str], stdin: bool
) -> ClientConnection:
    url = exec_url(access.host, target, argv, stdin)
    # An expired plugin token is renewed here by running the plugin: keep the loop free.
    if access.plugin is not None:
        headers = await asyncio.to_thread(access.auth_headers)
        ssl_ctx = await asyncio.to_thread(access.ssl_context)
    else:
        headers, ssl_ctx = access.auth_headers(), access.ssl_context()
    try:
        return await connect(
            url,
            subprotocols=[*SUBPROTOCOLS],  # type: ignore[list-item]
            additional_headers=headers,
            ssl=ssl_ctx,
            server_hostname=access.server_hostname,
            # The kubeconfig's proxy-url, else the environment's (never for loopback).
            proxy=proxy_for(access),
            compression=None,
            user_agent_header=USER_AGENT,
            open_timeout=OPEN_TIMEOUT_SECONDS,
            max_size=MAX_MESSAGE,
            write_limit=WRITE_LIMIT,
            ping_interval=30,
            ping_timeout=120,
            close_timeout=5,
        )
    except InvalidStatus as exc:
        resp = exc.response
        refusal = classify_refusal(access, target, resp.status_code, bytes(resp.body or b""))
        if resp.status_code == 401:
            raise _Unauthorized(str(refusal)) from exc
        raise refusal from exc
    except InvalidHandshake as exc:
        raise UpgradeRefused(f"{target.describe()}: WebSocket exec failed: {exc}") from exc
    except TimeoutError as exc:
        raise TransportError(
            f"cannot connect to the Kubernetes API at {access.host}: timed out"
        ) from exc
    except ssl.SSLCertVerificationError as exc:
        raise TransportError(
            f"cannot connect to the Kubernetes API at {access.host}: certificate verify"
            f" failed: {exc.verify_message}"
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise TransportError(
            f"cannot connect to the Kubernetes API at {access.host}: {reason}"
        ) from exc


def exit_code_of(status: dict[str, Any]) -> tuple[int, str | None]:
    """(exit code, message for the user or None) from a channel-3 Status."""
    if status.get("status") == "Success":
        return 0, None
    causes = (status.get("details") or {}).get("causes") or []
    for cause in causes:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message")), None
    message = str(status.get("message") or "the command failed")
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127, message
    return -1, message


class WebSocketExecChannel:
    """A command's stdin/stdout over one exec WebSocket; stderr lines go to a sink."""

    def __init__(self, ws: ClientConnection, stderr: StderrSink, description: str) -> None:
        self._ws = ws
        self._sink = stderr
        self._description = description
        self.v5 = ws.subprotocol == V5
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(STDOUT_QUEUE)
        self._buf = b""
        self._eof = False
        self._done = False  # the pump has ended: nothing more will be queued
        self._stderr_tail = b""
        self._exit: int | None = None
        self._stdin_closed = False
        self._remote_kill: Callable[[], Awaitable[None]] | None = None
        self._reader = asyncio.ensure_future(self._pump())

    def set_remote_kill(self, remote_kill: Callable[[], Awaitable[None]] | None) -> None:
        """How to end the command in the container: closing an exec stream does not."""
        self._remote_kill = remote_kill

    async def _pump(self) -> None:
        """Demultiplex server messages until the socket closes; b"" in the queue marks EOF."""
        try:
            async for message in self._ws:
                if isinstance(message, str) or not message:
                    continue
                channel = message[0]
                if channel == STDOUT and len(message) > 1:
                    await self._queue.put(message[1:])
                elif channel == STDERR:
                    self._stderr(message[1:])
                elif channel == ERROR and len(message) > 1:
                    self._on_status(message[1:])
        except ConnectionClosed:
            pass
        finally:
            self._stderr(b"", final=True)
            if self._exit is None:
                self._exit = -1
            # Never wait here for room in the queue: when the consumer has stopped reading
            # (kill() of a command flooding stdout) that wait would never end, and neither
            # would kill() or wait(). A full queue drops the EOF marker; read() then sees
            # _done once it has drained the queue.
            self._done = True
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(b"")

    def _stderr(self, data: bytes, final: bool = False) -> None:
        self._stderr_tail += data
        *lines, self._stderr_tail = self._stderr_tail.split(b"\n")
        if (final or len(self._stderr_tail) > MAX_STDERR_LINE) and self._stderr_tail:
            lines, self._stderr_tail = [*lines, self._stderr_tail], b""
        for line in lines:
            with contextlib.suppress(Exception):
                self._sink(line.decode("utf-8", "replace").rstrip("\r"))

    def _on_status(self, body: bytes) -> None:
        try:
            status = json.loads(body)
        except ValueError:
            status = {"status": "Failure", "message": body.decode("utf-8", "replace")}
        code, message = exit_code_of(status if isinstance(status, dict) else {})
        self._exit = code
        if message:
            with contextlib.suppress(Exception):
                self._sink(message)

    async def read(self, n: int) -> bytes:
        if not self._buf:
            if self._eof or (self._done and self._queue.empty()):
                self._eof = True
                return b""
            chunk = await self._queue.get()
            if not chunk:
                self._eof = True
                return b""
            self._buf = chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def read_line(self, limit: int = 4096) -> bytes:
        """One stdout line with its newline (``b""`` at EOF); for start-up handshakes."""
        line = b""
        while b"\n" not in line and len(line) < limit:
            chunk = await self.read(limit)
            if not chunk:
                break
            line += chunk
        head, sep, rest = line.partition(b"\n")
        self._buf = rest + self._buf
        return head + sep

    async def write(self, data: bytes) -> None:
        if self._stdin_closed:
            raise TransportError(f"{self._description}: the command's input is closed")
        view = memoryview(data)
        try:
            for at in range(0, len(view), STDIN_CHUNK):
                await self._ws.send(b"\x00" + view[at : at + STDIN_CHUNK])
        except ConnectionClosed as exc:
            raise TransportError(f"{self._description}: the exec connection closed") from exc

    async def close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        if self.v5:  # v4 has no close signal: the command sees EOF when the socket closes
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(bytes([CLOSE, STDIN]))

    async def wait(self) -> int:
        """The exit code (-1 when the connection ended without one). As with a pipe, stdout
        must be read to its end, or a command with unread output cannot finish. After
        kill() it returns at once (the pump's cancellation is not ours to raise)."""
        if not self._reader.done():
            await asyncio.wait({self._reader})  # never cancels the pump when we are cancelled
        return self._exit if self._exit is not None else -1

    async def kill(self) -> None:
        """End the command (through ``remote_kill`` when set) and close the connection.

        Closing an exec stream does not end the command in the container: the API server
        only drops the streams. Safe to call twice."""
        remote, self._remote_kill = self._remote_kill, None
        if remote is not None and not self._reader.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(remote(), REMOTE_KILL_TIMEOUT_SECONDS)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 5)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        if self._exit is None:
            self._exit = -1


#: The shape of ``Transport.run``.
Runner = Callable[[Sequence[str], bytes, float], Awaitable[RunResult]]


class KubectlExecTransport(WrappedExecTransport):
    """Runs commands in a pod container through ``kubectl exec -i`` (the fallback)."""

    def __init__(self, target: ExecTarget, context: str | None, kubectl: str = "kubectl") -> None:
        super().__init__()
        self.target = target
        self.context = context
        self.kubectl = kubectl
        self.description = f"{target.describe()} (kubectl exec)"
        self.link_bytes_per_second: float | None = None
        self.missing = f"kubectl is not installed (no `{kubectl}` command on PATH)"

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        t = self.target
        ctx = ["--context", self.context] if self.context else []
        return [self.kubectl, *ctx, "exec", "-i", "-n", t.namespace, t.pod, "-c", t.container,
                "--", *argv]  # fmt: skip

    def classify(self, stderr: str, exit_code: int) -> TransportError | None:
        low = stderr.lower()
        t = self.target
        if "(notfound)" in low and "pods" in low:
            return TransportError(f"pod {t.namespace}/{t.pod} not found")
        if "unauthorized" in low or "must be logged in" in low:
            return TransportError(f"unauthorized: kubectl exec into {t.describe()} was refused")
        if "is not valid for pod" in low or "container not found" in low:
            return TransportError(f"container {t.container} not found in pod {t.namespace}/{t.pod}")
        if "unable to connect to the server" in low:
            return TransportError(f"cannot connect to the Kubernetes API: {last_line(stderr, '')}")
        return None

    async def workdir(self) -> str:
        return await read_workdir(self.run, self.description)


async def read_workdir(run: Runner, description: str) -> str:
    """The container's WORKDIR: the runtime starts exec'ed commands there, so ``pwd`` says it
    (``sh -c pwd`` uses the shell's builtin; a bare ``pwd`` binary is the shell-less fallback)."""
    result = await run(["sh", "-c", "pwd"], b"", 60.0)
    if result.exit_code in (126, 127):
        result = await run(["pwd"], b"", 60.0)
    out = result.stdout.decode("utf-8", "replace").strip()
    if result.exit_code != 0 or not out.startswith("/"):
        why = last_line(result.stderr.decode("utf-8", "replace"), f"exit code {result.exit_code}")
        raise TransportError(f"{description}: cannot read the working directory: {why}")
    return out

"""Exec (WebSocket, channel.k8s.io protocols) and logs of the Kubernetes API emulator.

Owns: ``/pods/{name}/exec`` over WebSocket with the ``v5``/``v4`` (and older)
``channel.k8s.io`` subprotocols, backed by ``docker exec -i``, and ``/pods/{name}/log``
backed by the Engine API's log stream. May import: stdlib, aiohttp, the emulator's modules.

Wire format (as the real API server): every WebSocket binary message starts with one channel
byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a ``Status`` JSON when the command ends, exit code
in ``details.causes[reason=ExitCode]``), 4 terminal resize; v5 adds 255 "close": ``[255, 0]``
from the client closes the command's stdin. Data is streamed both ways with backpressure: a
stdin message is written to the process before the next one is read, and stdout is read from
the process only once the previous message has been handed to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from .docker import exec_argv, log_stream
from .kubelet import Kubelet
from .pods import Pod, PodStore
from .server import Switches, not_found, status
from .tty import PtyExec

READ_CHUNK = 256 * 1024
OCI_FAILURE = b"OCI runtime exec failed"
CLOSE_CHANNEL = 255
RESIZE_CHANNEL = 4


def _pick_container(pod: Pod, requested: str | None) -> tuple[str | None, web.Response | None]:
    if requested:
        return requested, None
    if len(pod.containers) == 1:
        return pod.containers[0].name, None
    names = " ".join(c.name for c in pod.containers)
    msg = f"a container name must be specified for pod {pod.name}, choose one of: [{names}]"
    return None, status(400, "BadRequest", msg)


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            f"[{' '.join(command)}], exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class Streams:
    def __init__(self, store: PodStore, kubelet: Kubelet, switches: Switches) -> None:
        self.store, self.kubelet, self.switches = store, kubelet, switches

    def _refused(self, request: web.Request) -> bool:
        allowed = self.switches.refuse_upgrade_except
        if allowed is None:
            return False
        return not request.headers.get("User-Agent", "").startswith(allowed)

    async def exec(self, request: web.Request) -> web.StreamResponse:
        pod = self.store.get(request.match_info["ns"], request.match_info["name"])
        if pod is None:
            return not_found(request.match_info["name"])
        container, error = _pick_container(pod, request.query.get("container"))
        if error is not None or container is None:
            return error or status(400, "BadRequest", "no container")
        problem = await self.kubelet.exec_ready(pod, container)
        if problem is not None:
            return status(400, "BadRequest", problem)
        query = request.query
        if not query.getall("command", []):
            return status(400, "BadRequest", "you must specify at least 1 command")
        if not any(query.get(k) in ("1", "true") for k in ("stdin", "stdout", "stderr")):
            msg = "you must specify at least 1 of stdin, stdout, stderr"
            return status(400, "BadRequest", msg)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        ua = request.headers.get("User-Agent", "")
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        if not is_ws or request.method != "GET" or self._refused(request):
            upgrade = request.headers.get("Upgrade", "-")
            self.switches.exec_log.append((ua, offered, f"<refused {request.method} {upgrade}>"))
            return status(400, "BadRequest", "Upgrade request required")
        wanted = [p.strip() for p in offered.split(",") if p.strip()]
        if wanted and not set(wanted) & set(self.switches.exec_protocols):
            self.switches.exec_log.append((ua, offered, "<no common subprotocol>"))
            return status(400, "BadRequest", "requested protocol(s) are not supported")
        # No permessage-deflate: the API server does not negotiate it.
        ws = web.WebSocketResponse(
            protocols=self.switches.exec_protocols, max_msg_size=0, compress=False
        )
        await ws.prepare(request)
        self.switches.exec_log.append((ua, offered, ws.ws_protocol or ""))
        cs = pod.container(container)
        assert cs is not None
        command = query.getall("command", [])
        want_stdin = query.get("stdin") in ("1", "true")
        if query.get("tty") in ("1", "true"):
            await self._run_tty(ws, cs.docker_name, command, want_stdin)
        else:
            argv = exec_argv(cs.docker_name, command, want_stdin)
            await self._run(ws, argv, command, want_stdin)
        return ws

    async def _run(
        self, ws: web.WebSocketResponse, argv: list[str], command: list[str], want_stdin: bool
    ) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=READ_CHUNK * 4,
        )
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        reader = asyncio.ensure_future(self._from_client(ws, proc, proc.stdin, v5))
        try:
            assert proc.stdout is not None and proc.stderr is not None
            # stderr flows from the start: a command may fill it before writing any stdout.
            errors = asyncio.ensure_future(self._to_client(ws, proc.stderr, 2))
            first, failed = await self._exec_failure(proc, proc.stdout)
            if failed is None:
                await self._to_client(ws, proc.stdout, 1, first)
            await errors
            code = await proc.wait()
            if not ws.closed:
                status = exit_status(code, command) if failed is None else failed
                await ws.send_bytes(b"\x03" + json.dumps(status).encode())
                await ws.close()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _run_tty(
        self, ws: web.WebSocketResponse, container: str, command: list[str], want_stdin: bool
    ) -> None:
        """Like :meth:`_run` on a pseudo-terminal: one output channel, resizes on channel 4."""
        session = await PtyExec.start(container, command, want_stdin)
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        stdin = session.stdin if want_stdin else None
        reader = asyncio.ensure_future(self._from_client(ws, session.proc, stdin, v5, session))
        try:
            prefix = b"\x01"
            while chunk := await session.read(READ_CHUNK):
                if ws.closed:
                    break
                await ws.send_bytes(prefix + chunk)
            code = await session.proc.wait()
            if not ws.closed:
                await ws.send_bytes(b"\x03" + json.dumps(exit_status(code, command)).encode())
                await ws.close()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(ProcessLookupError):
                session.proc.kill()
            await session.proc.wait()
            if session.stdin is not None:
                session.stdin.close()

    async def _exec_failure(
        self, proc: asyncio.subprocess.Process, stdout: asyncio.StreamReader
    ) -> tuple[bytes, dict[str, Any] | None]:
        """(first stdout bytes, the Status a kubelet sends when the command cannot start).

        ``docker exec -i`` prints the runtime's refusal (binary missing) on stdout and exits
        126/127; a kubelet sends it on the error channel instead, with no exit code."""
        first = await stdout.read(READ_CHUNK)
        if not first.startswith(OCI_FAILURE):
            return first, None
        first += await stdout.read()
        if await proc.wait() not in (126, 127):
            return first, None
        text = first.decode("utf-8", "replace").strip()
        message = f"Internal error occurred: error executing command in container: {text}"
        return b"", {"metadata": {}, "status": "Failure", "message": message,
                     "reason": "InternalError", "code": 500}  # fmt: skip

    async def _to_client(
        self, ws: web.WebSocketResponse, src: asyncio.StreamReader, ch: int, first: bytes = b""
    ) -> None:
        prefix = bytes([ch])
        if first and not ws.closed:
            await ws.send_bytes(prefix + first)
        while chunk := await src.read(READ_CHUNK):
            if ws.closed:
                return
            await ws.send_bytes(prefix + chunk)

    async def _from_client(
        self,
        ws: web.WebSocketResponse,
        proc: asyncio.subprocess.Process,
        stdin: asyncio.StreamWriter | None,
        v5: bool,
        terminal: PtyExec | None = None,
    ) -> None:
        async for msg in ws:
            # Text frames count too (the API server reads both; the official Python client
            # sends stdin as text): their bytes are the UTF-8 of the text.
            if msg.type == WSMsgType.TEXT:
                raw = msg.data.encode("utf-8")
            elif msg.type == WSMsgType.BINARY:
                raw = msg.data
            else:
                continue
            if not raw:
                continue
            ch, data = raw[0], raw[1:]
            if ch == 0 and stdin is not None and data:
                try:
                    stdin.write(data)
                    await stdin.drain()
                except (ConnectionError, BrokenPipeError):
                    stdin = None
            elif ch == CLOSE_CHANNEL and v5 and data[:1] == b"\x00" and stdin is not None:
                stdin.close()
                stdin = None
            elif ch == RESIZE_CHANNEL and terminal is not None:
                terminal.resize(data)
        # The client went away: a command that outlives its session would leak.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    async def logs(self, request: web.Request) -> web.StreamResponse:
        pod = self.store.get(request.match_info["ns"], request.match_info["name"])
        if pod is None:
            return not_found(request.match_info["name"])
        container, error = _pick_container(pod, request.query.get("container"))
        if error is not None or container is None:
            return error or status(400, "BadRequest", "no container")
        cs = pod.container(container)
        if cs is None:
            return status(
                400, "BadRequest", f"container {container} is not valid for pod {pod.name}"
            )
        q = request.query
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        follow = q.get("follow") in ("1", "true")
        stamps = q.get("timestamps") in ("1", "true")
        async for chunk in log_stream(cs.docker_name, follow, q.get("tailLines"), stamps):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

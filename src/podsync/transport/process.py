"""Local child processes as byte pipes.

Owns: :class:`ProcessChannel` (an asyncio subprocess as a
:class:`~podsync.transport.base.Channel`), :func:`run_process` (run to completion with a
deadline), :func:`start_detached`, commands started ahead (:func:`start_ahead`) and the kill
timings. May import: the standard library, ``podsync.errors`` and ``podsync.transport.base``.
The shell wrapper that remote clients share is ``podsync.transport.wrapped``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from podsync.errors import TransportError
from podsync.transport.base import RunResult, StderrSink

#: How long a command may take to exit after SIGTERM before it gets SIGKILL.
KILL_GRACE_SECONDS = 0.5
#: Upper bound for the far-side kill helper (TERM, grace, KILL, wait until reaped) when a
#: caller waits for it (``run`` after a timeout). ``kill()`` starts it detached instead.
REMOTE_KILL_TIMEOUT_SECONDS = 15.0
#: After the far-side kill was started, how long the local client gets to exit by itself.
REMOTE_EXIT_WAIT_SECONDS = 0.3
#: StreamReader buffer limit: also the longest stderr line delivered whole.
STREAM_LIMIT = 1 << 20

RemoteKill = Callable[[], Awaitable[None]]


#: Commands started ahead of their use (:func:`start_ahead`), by argv and session flag, with
#: the loop they belong to: the first :func:`start_process` of the same command takes one.
_AHEAD: dict[
    tuple[tuple[str, ...], bool], tuple[asyncio.AbstractEventLoop, asyncio.subprocess.Process]
] = {}


def start_ahead(loop: asyncio.AbstractEventLoop, argv: Sequence[str]) -> None:
    """Start ``argv`` (in a session of its own) on ``loop``, which is not running: the CLI
    does this before the engine's imports, and the command runs meanwhile. Nothing happens
    when it cannot be started (the real start then says why)."""
    key = (tuple(argv), True)
    if key in _AHEAD:
        return
    try:
        proc = loop.run_until_complete(_create(argv, new_session=True))
    except (OSError, ValueError):
        return
    _AHEAD[key] = (loop, proc)


def discard_ahead() -> None:
    """Kill the commands started ahead that nobody took, and reap them while their loop
    (not running, about to close) still can: asyncio would warn on the terminal about a
    child whose loop is closed. The far side reads the end of its input: the agent ends."""
    while _AHEAD:
        _, (loop, proc) = _AHEAD.popitem()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if not loop.is_closed() and not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS))
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()


async def _create(argv: Sequence[str], *, new_session: bool) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=STREAM_LIMIT,
        start_new_session=new_session,
    )


async def start_process(
    argv: Sequence[str], *, missing: str, new_session: bool = False
) -> asyncio.subprocess.Process:
    """Start ``argv`` with all streams piped (or take it, started ahead on this loop);
    ``missing``: the error when argv[0] is absent."""
    ahead = _AHEAD.pop((tuple(argv), new_session), None)
    if ahead is not None:
        if ahead[0] is asyncio.get_running_loop():
            return ahead[1]
        _AHEAD[(tuple(argv), new_session)] = ahead  # another loop's: left to its owner
    try:
        return await _create(argv, new_session=new_session)
    except FileNotFoundError as exc:
        raise TransportError(missing) from exc
    except OSError as exc:
        raise TransportError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc


async def terminate(proc: asyncio.subprocess.Process, *, group: bool) -> None:
    """End a local process (its whole process group when ``group``): TERM, grace, KILL, reap."""

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(proc.pid, sig)
            elif proc.returncode is None:
                proc.send_signal(sig)

    if proc.returncode is None:
        send(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
        except TimeoutError:
            send(signal.SIGKILL)
            await proc.wait()
    if group:  # children that outlived the leader
        send(signal.SIGKILL)
    if proc.stdin is not None:
        proc.stdin.close()


async def _pump_lines(reader: asyncio.StreamReader, sink: StderrSink) -> None:
    """Deliver every line of ``reader`` to ``sink`` until EOF (a failing sink is not fatal:
    stopping to read would block the command once its stderr pipe fills)."""
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # a line longer than STREAM_LIMIT: its head was dropped
            continue
        if not line:
            return
        with contextlib.suppress(Exception):
            sink(line.decode("utf-8", "replace").rstrip("\r\n"))


class ProcessChannel:
    """A running local process's stdin/stdout as a :class:`Channel`; stderr goes to a sink."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        stderr: StderrSink,
        *,
        description: str,
        group: bool = False,
        remote_kill: RemoteKill | None = None,
    ) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._description = description
        self._group = group
        self._remote_kill = remote_kill
        self._stderr_task = asyncio.ensure_future(_pump_lines(proc.stderr, stderr))
        self._kill_task: asyncio.Future[None] | None = None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        stderr: StderrSink,
        *,
        description: str,
        missing: str,
        group: bool = False,
    ) -> ProcessChannel:
        """Start ``argv`` locally; ``group`` puts it in its own process group (kill ends all)."""
        proc = await start_process(argv, missing=missing, new_session=group)
        return cls(proc, stderr, description=description, group=group)

    @property
    def pid(self) -> int:
        """The local process's PID."""
        return self._proc.pid

    def set_remote_kill(self, remote_kill: RemoteKill | None) -> None:
        """How to end the command on the far side (called before the local client is ended)."""
        self._remote_kill = remote_kill

    async def read(self, n: int) -> bytes:
        return await self._stdout.read(n)

    async def read_line(self) -> bytes:
        """One stdout line including its newline (``b""`` at EOF); for start-up handshakes."""
        try:
            return await self._stdout.readline()
        except ValueError as exc:
            raise TransportError(f"{self._description}: unexpected long line on start") from exc

    async def write(self, data: bytes) -> None:
        if self._stdin.is_closing():
            raise TransportError(f"{self._description}: the command's input is closed")
        try:
            self._stdin.write(data)
            await self._stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TransportError(f"{self._description}: the command stopped reading") from exc

    async def close_stdin(self) -> None:
        if not self._stdin.is_closing():
            self._stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self._stdin.wait_closed()

    async def wait(self) -> int:
        code = await self._proc.wait()
        await self._finish_stderr()
        return code

    async def kill(self) -> None:
        """End the command here and over there, and wait until both are gone (the far-side
        kill is bounded by REMOTE_KILL_TIMEOUT_SECONDS). The far-side kill runs in a process
        of its own session, so a caller that stops waiting (podsync exiting) does not stop
        it."""
        if self._kill_task is None:
            self._kill_task = asyncio.ensure_future(self._kill())
        await asyncio.shield(self._kill_task)

    async def _kill(self) -> None:
        drain = asyncio.ensure_future(self._drain_stdout())
        try:
            if self._proc.returncode is None and self._remote_kill is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._remote_kill(), REMOTE_KILL_TIMEOUT_SECONDS)
                # The far side is gone: the client notices its streams closing and exits.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), REMOTE_EXIT_WAIT_SECONDS)
            await terminate(self._proc, group=self._group)
            await self._finish_stderr()
        except asyncio.CancelledError:
            self._kill_now()
            raise
        finally:
            drain.cancel()

    async def _drain_stdout(self) -> None:
        """Discard what the command still prints while it is being killed. Docker holds back
        the exit of a process whose output nobody reads, and with it every other exec in that
        container: the far-side kill itself would wait REMOTE_KILL_TIMEOUT_SECONDS behind an
        agent that keeps writing (a reader still running makes this a no-op)."""
        with contextlib.suppress(Exception):
            while await self._stdout.read(1 << 16):
                pass

    def _kill_now(self) -> None:
        """Last resort when the kill is cut short (podsync exiting): SIGKILL the local client
        (its whole group) and close its pipes, without waiting for anything. The far side
        then reads end of input; a far-side kill already started goes on by itself."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self._group:
                os.killpg(self._proc.pid, signal.SIGKILL)
            elif self._proc.returncode is None:
                self._proc.kill()
        transport = getattr(self._proc, "_transport", None)
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
        self._stderr_task.cancel()

    async def _finish_stderr(self) -> None:
        # A grandchild may still hold stderr open; do not hang on it.
        try:
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
        except TimeoutError:
            self._stderr_task.cancel()


async def run_process(
    argv: Sequence[str],
    stdin: bytes = b"",
    timeout: float = 60.0,
    *,
    description: str = "",
    missing: str | None = None,
    on_timeout: Callable[[bytes], Awaitable[None]] | None = None,
) -> RunResult:
    """Run ``argv`` locally to completion feeding ``stdin``; TransportError after ``timeout`` s.

    ``on_timeout`` gets the stdout read so far before the local process is ended (remote
    transports use it to end the command on the far side).
    """
    proc = await start_process(
        argv, missing=missing or f"{argv[0]} is not installed", new_session=True
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()

    async def feed(writer: asyncio.StreamWriter) -> None:
        # A command that exits without reading all input is fine: its exit code tells.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if stdin:
                writer.write(stdin)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

    async def collect(reader: asyncio.StreamReader, buf: bytearray) -> None:
        while chunk := await reader.read(1 << 16):
            buf += chunk

    gathered = asyncio.gather(
        feed(proc.stdin), collect(proc.stdout, out), collect(proc.stderr, err), proc.wait()
    )
    # Cut short (a timeout, a cancelled caller), it ends with an error nobody awaits: asyncio
    # would log "_GatheringFuture exception was never retrieved" when it is collected.
    gathered.add_done_callback(_retrieved)
    try:
        await asyncio.wait_for(gathered, timeout)
    except TimeoutError:
        if on_timeout is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(on_timeout(bytes(out)), REMOTE_KILL_TIMEOUT_SECONDS)
        where = f"{description}: " if description else ""
        raise TransportError(
            f"{where}{shlex.join(argv)} did not finish within {timeout:g} s"
        ) from None
    finally:
        await terminate(proc, group=True)
    assert proc.returncode is not None
    return RunResult(exit_code=proc.returncode, stdout=bytes(out), stderr=bytes(err))


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def start_detached(argv: Sequence[str]) -> subprocess.Popen[bytes] | None:
    """Start ``argv`` in a session of its own, output discarded; a daemon thread reaps it
    (its ``returncode`` is set when it ends) while podsync runs, init afterwards. None when
    it cannot be started."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None
    threading.Thread(target=proc.wait, name="podsync-reap", daemon=True).start()
    return proc

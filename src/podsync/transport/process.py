"""Local child processes as byte pipes, and the shell wrapper remote transports share.

Owns: :class:`ProcessChannel` (an asyncio subprocess as a :class:`~podsync.transport.base.Channel`),
:func:`run_process` (run to completion with a deadline) and :class:`WrappedExecTransport`, the
common part of ``docker exec`` and ``ssh``. May import: the standard library, ``podsync.errors``
and ``podsync.transport.base``.

Why a wrapper: killing a local ``docker exec`` or ``ssh`` client does not end the command on the
far side. Remote commands therefore run as ``sh -c 'echo podsync-pid $$; exec "$@"'``: the first
stdout line names the far-side PID (so ``kill()`` can end it there), and its arrival proves the
command really started, which separates the client's own failures ("no such container",
"connection refused") from the command's exit codes.
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
#: How long a remote command may take to start (docker exec / ssh handshake) and say its PID:
#: within the 30 s in which a dead or stalled far side must be reported.
START_TIMEOUT_SECONDS = 25.0
#: StreamReader buffer limit: also the longest stderr line delivered whole.
STREAM_LIMIT = 1 << 20
#: Stderr lines kept from a failed start to explain it.
STARTUP_LINES_KEPT = 50

PID_MARKER = b"podsync-pid "
WRAPPER_SCRIPT = 'echo "podsync-pid $$"; exec "$@"'
#: Far side: TERM to the command's process group (docker exec and sshd start it as a group
#: leader) and to the command, ~2 s grace, KILL (repeated), wait until the command is reaped,
#: then KILL whatever of its group is left. Only the command is waited for: orphans of a
#: container whose PID 1 never reaps stay zombies whatever we do.
KILL_SCRIPT = (
    'p=$1; kill -s TERM -- -"$p" "$p" 2>/dev/null; i=0; '
    'while kill -0 "$p" 2>/dev/null; do i=$((i+1)); '
    '[ "$i" -ge 200 ] && kill -s KILL -- -"$p" "$p" 2>/dev/null; [ "$i" -gt 1000 ] && exit 1; '
    # A sleep without fractions: one second counts as 100 rounds.
    "sleep 0.01 2>/dev/null || { sleep 1; i=$((i+99)); }; done; "
    'kill -s KILL -- -"$p" 2>/dev/null; exit 0'
)

RemoteKill = Callable[[], Awaitable[None]]


async def start_process(
    argv: Sequence[str], *, missing: str, new_session: bool = False
) -> asyncio.subprocess.Process:
    """Start ``argv`` with all streams piped; ``missing``: the error when argv[0] is absent."""
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=STREAM_LIMIT,
            start_new_session=new_session,
        )
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


def wrap(argv: Sequence[str]) -> list[str]:
    """``argv`` behind the PID-announcing shell wrapper."""
    return ["sh", "-c", WRAPPER_SCRIPT, "sh", *argv]


def split_pid(stdout: bytes) -> tuple[int, bytes] | None:
    """(far-side PID, the command's own stdout) from a wrapped command's output, or None when
    the wrapper never ran. Lines before the marker (a login banner) are dropped."""
    at = stdout.find(PID_MARKER)
    if at < 0 or (at > 0 and stdout[at - 1 : at] != b"\n"):
        return None
    end = stdout.find(b"\n", at)
    if end < 0:
        return None
    digits = stdout[at + len(PID_MARKER) : end].strip()
    return (int(digits), stdout[end + 1 :]) if digits.isdigit() else None


class _StartupSink:
    """Holds stderr lines until the command has started: before that they are the client's
    own complaints (explaining a failed start); afterwards they flow to the real sink. A flood
    before the start releases early, so no line is ever dropped; the first lines are kept to
    explain a failure."""

    def __init__(self, target: StderrSink) -> None:
        self._target = target
        self._kept: list[str] = []
        self._held: list[str] = []
        self._released = False

    def __call__(self, line: str) -> None:
        if len(self._kept) < STARTUP_LINES_KEPT:
            self._kept.append(line)
        if self._released:
            self._target(line)
            return
        self._held.append(line)
        if len(self._held) > STARTUP_LINES_KEPT:
            self.release()

    def text(self) -> str:
        return "\n".join(self._kept)

    def release(self) -> None:
        self._released = True
        held, self._held = self._held, []
        for line in held:
            with contextlib.suppress(Exception):
                self._target(line)


def last_line(text: str, fallback: str) -> str:
    """The last non-empty line of ``text`` (clients put the reason there)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else fallback


class WrappedExecTransport:
    """A transport whose commands run through a local client (``docker exec``, ``ssh``).

    Subclasses set ``description``, ``link_bytes_per_second`` and ``missing`` and implement
    :meth:`client_argv` and :meth:`classify`. When the far side has no ``sh`` (a shell-less
    image), commands run unwrapped; ``kill()`` then only ends the local client.
    """

    description: str
    link_bytes_per_second: float | None
    #: Error when the client binary is absent.
    missing: str

    def __init__(self) -> None:
        self._shell: bool | None = None  # None: not known yet; False: no sh over there

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        """The local command that runs ``argv`` over there with stdin attached."""
        raise NotImplementedError

    def classify(self, stderr: str, exit_code: int) -> TransportError | None:
        """The client's own failure (target gone, engine unreachable) as one line, else None."""
        raise NotImplementedError

    def shell_missing(self, stderr: str, exit_code: int) -> bool:
        """True when the failure says the far side has no ``sh``."""
        return exit_code in (126, 127) and '"sh"' in stderr

    def _not_started(self, argv: Sequence[str], stderr: str, exit_code: int) -> TransportError:
        return self.classify(stderr, exit_code) or TransportError(
            f"{self.description}: cannot run {argv[0]}: "
            + last_line(stderr, f"the client exited with code {exit_code}")
        )

    async def kill_remote(self, pid: int) -> None:
        """End far-side process ``pid``: TERM, grace, KILL, and wait until it is gone."""
        await run_process(
            self.client_argv(["sh", "-c", KILL_SCRIPT, "sh", str(pid)]),
            timeout=REMOTE_KILL_TIMEOUT_SECONDS,
            description=self.description,
            missing=self.missing,
        )

    async def kill_remote_detached(self, pid: int) -> None:
        """End far-side process ``pid`` as :meth:`kill_remote`, from a process that goes on
        even when this wait is cancelled or podsync exits (KILL_SCRIPT ends by itself)."""
        proc = start_detached(self.client_argv(["sh", "-c", KILL_SCRIPT, "sh", str(pid)]))
        while proc is not None and proc.returncode is None:
            await asyncio.sleep(0.02)

    async def spawn(self, argv: Sequence[str], stderr: StderrSink) -> ProcessChannel:
        if self._shell is not False:
            channel = await self._spawn_wrapped(argv, stderr)
            if channel is not None:
                return channel
        return await ProcessChannel.start(
            self.client_argv(argv),
            stderr,
            description=self.description,
            missing=self.missing,
            group=True,
        )

    async def _spawn_wrapped(
        self, argv: Sequence[str], stderr: StderrSink
    ) -> ProcessChannel | None:
        startup = _StartupSink(stderr)
        channel = await ProcessChannel.start(
            self.client_argv(wrap(argv)),
            startup,
            description=self.description,
            missing=self.missing,
            group=True,
        )
        before: list[bytes] = []  # stdout before the marker: a banner, or the client's error
        try:
            pid = await asyncio.wait_for(self._read_pid(channel, before), START_TIMEOUT_SECONDS)
        except TimeoutError:
            await channel.kill()
            raise TransportError(
                f"{self.description}: {argv[0]} did not start within {START_TIMEOUT_SECONDS:g} s"
            ) from None
        except BaseException:
            await channel.kill()
            raise
        if pid is None:
            code = await channel.wait()
            # Some docker versions print the OCI runtime's error on stdout.
            text = startup.text() + "\n" + b"".join(before).decode("utf-8", "replace")
            if self.shell_missing(text, code):
                self._shell = False
                return None
            raise self._not_started(argv, text, code)
        self._shell = True
        channel.set_remote_kill(lambda: self.kill_remote_detached(pid))
        startup.release()
        return channel

    @staticmethod
    async def _read_pid(channel: ProcessChannel, before: list[bytes]) -> int | None:
        for _ in range(STARTUP_LINES_KEPT):  # tolerate a short banner before the marker
            line = await channel.read_line()
            if not line:
                return None
            found = split_pid(line)
            if found is not None:
                return found[0]
            before.append(line)
        return None

    async def run(
        self, argv: Sequence[str], stdin: bytes = b"", timeout: float = 60.0
    ) -> RunResult:
        if self._shell is not False:

            async def on_timeout(out: bytes) -> None:
                found = split_pid(out)
                if found is not None:
                    await self.kill_remote(found[0])

            result = await run_process(
                self.client_argv(wrap(argv)),
                stdin,
                timeout,
                description=self.description,
                missing=self.missing,
                on_timeout=on_timeout,
            )
            found = split_pid(result.stdout)
            if found is not None:
                self._shell = True
                return RunResult(result.exit_code, found[1], result.stderr)
            text = (result.stderr + b"\n" + result.stdout).decode("utf-8", "replace")
            if not self.shell_missing(text, result.exit_code):
                raise self._not_started(argv, text, result.exit_code)
            self._shell = False
        result = await run_process(
            self.client_argv(argv),
            stdin,
            timeout,
            description=self.description,
            missing=self.missing,
        )
        if result.exit_code != 0:
            error = self.classify(result.stderr.decode("utf-8", "replace"), result.exit_code)
            if error is not None:
                raise error
        return result

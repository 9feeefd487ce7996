"""The shell wrapper that remote transports (``docker exec``, ``ssh``, ``kubectl exec``) share.

Owns: :class:`WrappedExecTransport`, the wrapper and far-side kill scripts, and parsing what
the wrapper prints. May import: the standard library, ``podsync.errors``,
``podsync.transport.base`` and ``podsync.transport.process``.

Why a wrapper: killing a local ``docker exec`` or ``ssh`` client does not end the command on the
far side. Remote commands therefore run as ``sh -c 'echo podsync-pid $$; exec "$@"'``: the first
stdout line names the far-side PID (so ``kill()`` can end it there), and its arrival proves the
command really started, which separates the client's own failures ("no such container",
"connection refused") from the command's exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from podsync.errors import TransportError
from podsync.transport.base import RunResult, StderrSink
from podsync.transport.process import (
    REMOTE_KILL_TIMEOUT_SECONDS,
    ProcessChannel,
    run_process,
    start_detached,
)

#: How long a remote command may take to start (docker exec / ssh handshake) and say its PID:
#: within the 30 s in which a dead or stalled far side must be reported.
START_TIMEOUT_SECONDS = 25.0
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

    def wrapped_argv(self, argv: Sequence[str]) -> list[str]:
        """The local command line running ``argv`` behind the PID wrapper: what :meth:`run`
        and :meth:`spawn` start while the far side is not known to lack a shell
        (``engine.prestart`` starts the same one ahead)."""
        return self.client_argv(wrap(argv))

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
            self.wrapped_argv(argv),
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
                self.wrapped_argv(argv),
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

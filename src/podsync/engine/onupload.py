"""Commands after upload (``dev.sync[*].onUpload.exec``): which run, when, and running them.

Owns: matching what a batch uploaded against each command's ``onChange`` (core.excludes'
gitignore :class:`~podsync.core.excludes.Matcher`), the :class:`Schedule` of runs, and
:class:`OnUpload`, which runs the commands in the container through the sync's transport and
streams their output. May import: ``podsync.core``, ``podsync.engine.spec``/``report``/
``executor``, ``podsync.transport.base``, ``podsync.errors``, the standard library.

The rules (README, "Commands after upload"):

- "Uploaded" means written or deleted in the container by the sync. A command with
  ``onChange`` runs when one of those paths matches a pattern (gitignore syntax, relative to
  the sync root; a path below a matched folder matches too); without ``onChange`` after every
  batch that uploaded something.
- Never during a first pass (the initial sync, a resume from saved state, the resync after a
  reconnect): what it uploaded is remembered, and each matching command runs once after it.
- One command at a time per sync, in the order written. A batch that needs a command already
  running (or already run in the current round) runs it once more after the round; a batch
  that needs one still waiting in the round adds nothing, since that run starts after the
  batch. No needed run is dropped, none runs twice at once.
- ``command`` runs as ``sh -c COMMAND`` in the container folder (stdin /dev/null, stderr
  merged into stdout), through the transport, not the agent: the python and the shell agent
  behave the same. Output goes line by line to the console and the sync log, prefixed
  ``[sync-N exec]``; a non-zero exit is one warning line; the sync goes on either way.
- A command that hangs is the user's: the sync goes on, the console and log say it still runs
  (after 30 s, then every 5 min in the log), ``status sync`` shows it. When the connection
  ends the command is stopped (TERM to its process group, then KILL) and, unless podsync is
  stopping, runs again once after the reconnect's first pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence

from podsync.core.entry import DIR, Entry
from podsync.core.excludes import Matcher
from podsync.core.paths import RelPath
from podsync.core.plan import DeleteRemote, Plan, Upload
from podsync.engine.executor import Outcome
from podsync.engine.report import Console, StatusBoard, SyncLog
from podsync.engine.spec import UploadCommand
from podsync.errors import PodsyncError
from podsync.transport.base import Channel, Transport

#: ``sh -c`` script: "$1" is the container folder, "$2" the user's command.
SCRIPT = 'exec 2>&1 </dev/null; cd "$1" && exec sh -c "$2"'
#: First "still running" notice (console and log), then one every NOTICE_EVERY (log only).
NOTICE_AFTER_SECONDS = 30.0
NOTICE_EVERY_SECONDS = 300.0
#: Output shown per run (console and log); the rest is read and counted, not kept.
MAX_OUTPUT_BYTES = 1 << 20
#: Longer lines are shown in pieces of this many bytes (bounded memory for endless lines).
MAX_LINE_BYTES = 8192
#: After the command exited, how long its output may still arrive (a background child that
#: keeps the pipe open must not hold the next run back).
DRAIN_SECONDS = 2.0
#: Pauses before trying again a command that could not be started.
START_RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)

Changed = tuple[RelPath, bool]  # (path, is_dir)


def uploaded_paths(plan: Plan, out: Outcome) -> list[Changed]:
    """What ``plan`` really changed in the container (deleted, then written), with kinds."""
    is_dir: dict[RelPath, bool] = {}
    for action in plan.actions:  # deletions come first in a plan: a later write's kind wins
        if isinstance(action, Upload):
            is_dir[action.path] = action.entry.kind == DIR
        elif isinstance(action, DeleteRemote):
            expect = action.expect
            is_dir[action.path] = isinstance(expect, Entry) and expect.kind == DIR
    return [(p, is_dir.get(p, False)) for p in (*out.deleted_remote, *out.uploaded)]


class Triggers:
    """Which commands a set of uploaded paths triggers (pure)."""

    def __init__(self, commands: Sequence[UploadCommand]) -> None:
        self._matchers = [
            None if c.on_change is None else Matcher.compile(c.on_change) for c in commands
        ]

    def match(self, changed: Sequence[Changed]) -> dict[int, RelPath]:
        """Index of each triggered command -> the first uploaded path that triggers it."""
        hits: dict[int, RelPath] = {}
        for index, matcher in enumerate(self._matchers):
            for path, is_dir in changed:
                if matcher is None or matcher.matches(path, is_dir):
                    hits[index] = path
                    break
        return hits


class Schedule:
    """Which command runs next (pure). Runs go in rounds: a round is the needed commands in
    the order written; what is needed again while a round runs forms the next one."""

    def __init__(self) -> None:
        self.running: int | None = None
        self.held = True
        self._round: list[int] = []  # this round's commands not started yet
        self._next: set[int] = set()

    def need(self, indices: Iterable[int]) -> None:
        for index in indices:
            if index not in self._round:  # a waiting run starts after this batch: enough
                self._next.add(index)

    def take(self) -> int | None:
        """The command to start now, or None (held, one is running, or nothing is due)."""
        if self.held or self.running is not None:
            return None
        if not self._round and self._next:
            self._round, self._next = sorted(self._next), set()
        if not self._round:
            return None
        self.running = self._round.pop(0)
        return self.running

    def finished(self) -> None:
        self.running = None

    def interrupted(self) -> None:
        """The running command was stopped before its end: it is the first to run again."""
        if self.running is not None:
            self._round.insert(0, self.running)
            self.running = None

    @property
    def idle(self) -> bool:
        """Nothing running and nothing due."""
        return self.running is None and not self._round and not self._next


def printable(text: str) -> str:
    """Output from the container is untrusted: control characters (terminal escapes) are
    shown escaped (``\\x1b``), never sent to the user's terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch == "\t" else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def short(command: str, width: int = 60) -> str:
    """A command as one line for messages, in backquotes (commands are full of quotes)."""
    lines = command.strip().splitlines() or [""]
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return "`" + (text if len(text) <= width else text[: width - 3] + "...") + "`"


class OnUpload:
    """The onUpload commands of one sync (mixed into the session by composition).

    The session calls :meth:`note` after every executed plan, :meth:`attach` once connected
    (runs are held), :meth:`release` when the first pass is over, :meth:`detach` when the
    connection ends or the sync stops.
    """

    def __init__(
        self,
        name: str,
        commands: Sequence[UploadCommand],
        *,
        console: Console,
        log: SyncLog,
        board: StatusBoard | None = None,
        enabled: bool = True,
        notice_after: float = NOTICE_AFTER_SECONDS,
    ) -> None:
        self.name = name
        self.prefix = f"{name} exec"
        self.commands = tuple(commands)
        self.active = bool(self.commands) and enabled
        self.schedule = Schedule()
        self.runs = 0  # commands started (for status and tests)
        self._triggers = Triggers(self.commands)
        #: command index -> what triggered it ("package.json uploaded", "a.lock deleted")
        self._why: dict[int, str] = {}
        self._console = console
        self._log = log
        self._board = board
        self._notice_after = notice_after
        self._transport: Transport | None = None
        self._root = ""
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._channel: Channel | None = None
        self._stopping = False
        self._status_text: str | None = None
        self._shown = 0
        self._hidden = 0

    # -- what the session calls ------------------------------------------------------------
    def note(self, plan: Plan, out: Outcome) -> None:
        """An executed plan: the commands its uploads trigger become due."""
        if not self.active or not (out.uploaded or out.deleted_remote):
            return
        hits = self._triggers.match(uploaded_paths(plan, out))
        gone = set(out.deleted_remote).difference(out.uploaded)
        for index, path in hits.items():
            self._why.setdefault(index, f"{path} {'deleted' if path in gone else 'uploaded'}")
        self.schedule.need(hits)
        self._wake.set()

    def attach(self, transport: Transport, root: str) -> None:
        """Connected to the container folder ``root``: runs wait for :meth:`release`."""
        if not self.active:
            return
        self._transport, self._root = transport, root
        self._stopping = False
        self.schedule.held = True
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._work())

    def release(self) -> None:
        """The first pass is over: what it uploaded (and what comes next) may run."""
        if self.active:
            self.schedule.held = False
            self._wake.set()

    async def detach(self) -> None:
        """The connection ended: stop a running command (it runs again after the next
        first pass, unless podsync is stopping)."""
        if self._worker is None:
            return
        self._stopping = True
        self.schedule.held = True
        running = self.schedule.running
        channel = self._channel
        stopping = _being_cancelled()
        try:
            if channel is not None:
                await channel.kill()
        finally:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker, self._transport, self._channel = None, None, None
            if running is not None:
                self.schedule.interrupted()
                why = (
                    "podsync is stopping"
                    if stopping
                    else "the connection ended; it runs again once the sync is back"
                )
                self._say(f"stopped {short(self.commands[running].command)}: {why}", "WARN")
            self._status(None)

    # -- running --------------------------------------------------------------------------
    async def _work(self) -> None:
        failures = 0
        while True:
            index = self.schedule.take()
            if index is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            started = await self._run(index)
            if started:
                failures = 0
                continue
            delay = START_RETRY_SECONDS[min(failures, len(START_RETRY_SECONDS) - 1)]
            failures += 1
            await asyncio.sleep(delay)

    async def _run(self, index: int) -> bool:
        """Run command ``index`` to its end; False when it could not be started."""
        command = self.commands[index]
        why = self._why.pop(index, None)
        shown = short(command.command)
        self._say(f"running {shown}" + (f" ({why})" if why else ""))
        assert self._transport is not None
        argv = ["sh", "-c", SCRIPT, "podsync-exec", self._root, command.command]
        started = time.monotonic()
        try:
            channel = await self._transport.spawn(argv, self._client_line)
        except PodsyncError as exc:
            self.schedule.interrupted()
            if why is not None:
                self._why.setdefault(index, why)
            self._say(f"cannot start {shown}: {exc}; trying again shortly", "WARN")
            return False
        self.runs += 1
        self._channel = channel
        since = time.strftime("%H:%M:%S", time.gmtime())  # UTC, as status sync's other times
        self._status(f"onUpload command {shown} running since {since}")
        with contextlib.suppress(Exception):
            await channel.close_stdin()
        code = await self._follow(channel, shown, started)
        if self._stopping:  # detach() reports and reschedules it
            return True
        self._channel = None
        self.schedule.finished()
        self._status(None)
        seconds = time.monotonic() - started
        if code == 0:
            self._say(f"{shown} done in {seconds:.1f} s")
        else:
            self._say(
                f"{shown} failed with exit code {code} after {seconds:.1f} s; the sync goes on",
                "WARN",
            )
        return True

    async def _follow(self, channel: Channel, shown: str, started: float) -> int:
        """Stream the output until the command exits; say so while it keeps running."""
        self._shown = self._hidden = 0
        pump = asyncio.ensure_future(self._pump(channel))
        ended = asyncio.ensure_future(channel.wait())
        notice = self._notice_after
        try:
            while True:
                wait = max(0.0, started + notice - time.monotonic())
                done, _ = await asyncio.wait({ended}, timeout=wait)
                if ended in done:
                    break
                self._still_running(shown, notice, first=notice == self._notice_after)
                notice += NOTICE_EVERY_SECONDS
            await asyncio.wait({pump}, timeout=DRAIN_SECONDS)
            return ended.result()
        finally:
            pump.cancel()
            ended.cancel()
            await asyncio.gather(pump, ended, return_exceptions=True)
            if self._hidden:
                self._say(f"... {self._hidden} more lines of output not shown")

    def _still_running(self, shown: str, seconds: float, *, first: bool) -> None:
        text = (
            f"{shown} still running after {seconds:.0f} s; the sync goes on"
            " (podsync stops the command when it stops)"
        )
        self._say(text, console=first)
        self._status(f"onUpload command {shown} running for {seconds:.0f} s")

    async def _pump(self, channel: Channel) -> None:
        pending = b""
        while True:
            data = await channel.read(1 << 16)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._output(line)
            while len(pending) > MAX_LINE_BYTES:
                self._output(pending[:MAX_LINE_BYTES])
                pending = pending[MAX_LINE_BYTES:]
        if pending:
            self._output(pending)

    def _output(self, raw: bytes) -> None:
        if self._shown >= MAX_OUTPUT_BYTES:
            self._hidden += 1
            return
        self._shown += len(raw) + 1
        text = printable(raw.decode("utf-8", "replace").rstrip("\r"))
        self._log.write(self.prefix, "INFO", text)
        self._console.line(f"[{self.prefix}] {text}")

    def _client_line(self, line: str) -> None:
        """A line from the exec client itself (docker, kubectl): the command's own stderr is
        merged into its stdout."""
        self._output(line.encode("utf-8", "replace"))

    # -- reporting ------------------------------------------------------------------------
    def _say(self, message: str, level: str = "INFO", console: bool = True) -> None:
        self._log.write(self.prefix, level, message)
        if console:
            self._console.line(f"[{self.prefix}] {message}")

    def _status(self, text: str | None) -> None:
        """Show a running command in ``status sync`` (the row's message while watching)."""
        board = self._board
        row = board.rows.get(self.name) if board is not None else None
        if board is None or row is None:
            return
        if text is None:
            if self._status_text is not None and row.message == self._status_text:
                board.update(self.name, force=True, message=None)
            self._status_text = None
        elif row.state == "watching" and row.message in (None, self._status_text):
            self._status_text = text
            board.update(self.name, force=True, message=text)


def _being_cancelled() -> bool:
    """True when the current task is being cancelled (podsync stopping, not a reconnect)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

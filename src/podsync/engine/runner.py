"""Entry point of the engine for the CLI: run a set of syncs until done or interrupted.

Owns: the event loop, signal handling, the bounded shutdown and the shared log/status of one
podsync process. May import: everything below ``cli``.

Shutdown: SIGINT or SIGTERM cancels every sync; each says ``bye`` to its agent and kills
what is left (``AgentLink.close``: about a second at most). The loop waits SHUTDOWN_SECONDS
for that, then closes regardless; a further signal changes nothing; and a last-resort timer
ends the process HARD_EXIT_SECONDS after the first signal, so podsync never hangs on exit.
Errors asyncio would print as tracebacks while tasks are torn down go to sync.log instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from podsync.engine.report import Console, StatusBoard, SyncLog
from podsync.engine.session import Session
from podsync.engine.spec import RunOptions, SyncSpec
from podsync.errors import EXIT_OK, EXIT_RUNTIME, PodsyncError
from podsync.limits import SHUTDOWN_SECONDS
from podsync.transport.process import discard_ahead

#: Optional hook run once every session with waitInitialSync finished its initial sync
#: (``podsync dev`` streams logs or opens a terminal there).
AfterInitial = Callable[[Sequence[Session]], Awaitable[None]]
#: After the first stop signal, the process ends within this long whatever happens.
HARD_EXIT_SECONDS = 4.0
#: Tasks still running after the shutdown get this long once more before the loop closes.
LEFTOVER_SECONDS = 0.3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(
    specs: Sequence[SyncSpec],
    options: RunOptions,
    after_initial: AfterInitial | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> int:
    """Run ``specs`` (initial sync, then watch unless ``options.watch`` is False); return the
    process exit code. Blocks; SIGINT/SIGTERM stop every sync cleanly (exit 0). ``loop``: a
    new loop to run on (``engine.prestart`` started agents on it), closed here."""
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    saved_hook = sys.unraisablehook
    stopped: list[bool] = []
    try:
        return _run_loop(_main(specs, options, after_initial, stopped), loop)
    except KeyboardInterrupt:  # a signal after the loop closed: we are stopping anyway
        return EXIT_OK
    finally:
        if not stopped:  # no stop signal: leave the process as we found it
            sys.unraisablehook = saved_hook
            for sig, handler in saved.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, handler)


def _run_loop(main: Coroutine[Any, Any, int], loop: asyncio.AbstractEventLoop | None = None) -> int:
    """``asyncio.run`` with a bounded teardown (asyncio.run waits for every leftover task and
    executor thread without a limit)."""
    loop = loop or asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_SECONDS))
            loop.run_until_complete(
                asyncio.wait(
                    [loop.create_task(loop.shutdown_asyncgens())], timeout=LEFTOVER_SECONDS
                )
            )
        finally:
            discard_ahead()
            asyncio.set_event_loop(None)
            loop.close()
            # The loop put the default handlers back; a late signal must not turn into a
            # KeyboardInterrupt while the process exits after a stop signal (run() puts the
            # caller's handlers back when there was none).
            for sig in STOP_SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(sig, signal.SIG_IGN)


def _hard_exit_later(code: int) -> None:
    """Start the last-resort timer (a daemon thread: it never delays a normal exit)."""

    def fire() -> None:
        with contextlib.suppress(Exception):
            sys.stderr.write("podsync: stopping took too long; exiting now\n")
            sys.stderr.flush()
        os._exit(code)

    timer = threading.Timer(HARD_EXIT_SECONDS, fire)
    timer.daemon = True
    timer.start()


async def _main(
    specs: Sequence[SyncSpec],
    options: RunOptions,
    after_initial: AfterInitial | None,
    stopped_by_signal: list[bool],
) -> int:
    state_dir = specs[0].state_dir
    console = Console(options.verbose)
    log = SyncLog(state_dir)
    board = StatusBoard(state_dir)
    sessions = [Session(spec, options, console, log, board) for spec in specs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: _quiet(log, context))
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(s.run(), name=s.spec.name) for s in sessions]
    if options.all_replicas:  # one supervisor per Kubernetes entry (engine.replicas)
        tasks += _supervisors(sessions, tasks, console, log, board)
    extra: list[asyncio.Task[None]] = []
    if after_initial is not None:
        extra.append(asyncio.create_task(_after(sessions, after_initial)))
    stopper = asyncio.create_task(stop.wait())
    failed: list[str] = []
    stopped = False
    try:
        pending = set(tasks)
        while pending:
            done, _ = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                stopped = True
                stopped_by_signal.append(True)
                _hard_exit_later(EXIT_OK)
                console.line("podsync: stopping")
                break
            for task in done:
                pending.discard(task)
                exc = task.exception()
                if isinstance(exc, PodsyncError):
                    said = board.rows[task.get_name()].state == "halted"  # the session said it
                    failed.append("" if said else f"[{task.get_name()}] {exc}")
                elif exc is not None:
                    raise exc
            if failed and options.watch:
                break
    finally:
        for task in tasks + extra:
            task.cancel()
        await asyncio.wait(tasks + extra, timeout=SHUTDOWN_SECONDS if stopped else None)
        for task in tasks + extra:  # their errors were reported above, or do not matter now
            if task.done() and not task.cancelled():
                task.exception()
        stopper.cancel()
        for session in sessions:
            if board.rows[session.spec.name].state not in ("halted", "error"):
                board.update(session.spec.name, state="stopped")
        board.flush()
        log.close()
        # Objects torn down with the loop (a pipe of a far side killed in the background)
        # may complain while being collected: sync.log, not tracebacks on the terminal.
        sys.unraisablehook = lambda unraisable: _quiet(
            log, {"message": str(unraisable.err_msg or ""), "exception": unraisable.exc_value}
        )
    for line in filter(None, failed):
        console.line(f"podsync: {line}")
    return EXIT_RUNTIME if failed else EXIT_OK


def _supervisors(
    sessions: Sequence[Session],
    tasks: Sequence[asyncio.Task[None]],
    console: Console,
    log: SyncLog,
    board: StatusBoard,
) -> list[asyncio.Task[None]]:
    from podsync.engine.replicas import ReplicaSupervisor

    return [
        asyncio.create_task(
            ReplicaSupervisor(session, task, console, log, board).run(),
            name=f"{session.spec.name} replicas",
        )
        for session, task in zip(sessions, tasks, strict=True)
        if session.spec.target.kind == "kubernetes"
    ]


def _quiet(log: SyncLog, context: dict[str, Any]) -> None:
    """asyncio's report of an error nobody awaited (e.g. while tasks are torn down): one line
    in sync.log, never a traceback on the terminal."""
    exc = context.get("exception")
    text = context.get("message", "") + (f": {exc!r}" if exc is not None else "")
    with contextlib.suppress(Exception):
        log.write("podsync", "DEBUG", f"asyncio: {' '.join(text.split())}")


async def _after(sessions: Sequence[Session], hook: AfterInitial) -> None:
    waiting = [s.initial_done.wait() for s in sessions if s.spec.wait_initial_sync]
    await asyncio.gather(*waiting)
    await hook(sessions)

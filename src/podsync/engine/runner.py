"""Entry point of the engine for the CLI: run a set of syncs until done or interrupted.

Owns: the event loop, signal handling and the shared log/status of one podsync process.
May import: everything below ``cli``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence

from podsync.engine.report import Console, StatusBoard, SyncLog
from podsync.engine.session import Session
from podsync.engine.spec import RunOptions, SyncSpec
from podsync.errors import EXIT_OK, EXIT_RUNTIME, PodsyncError

#: Optional hook run once every session with waitInitialSync finished its initial sync
#: (``podsync dev`` streams logs or opens a terminal there).
AfterInitial = Callable[[Sequence[Session]], Awaitable[None]]


def run(
    specs: Sequence[SyncSpec], options: RunOptions, after_initial: AfterInitial | None = None
) -> int:
    """Run ``specs`` (initial sync, then watch unless ``options.watch`` is False); return the
    process exit code. Blocks; SIGINT/SIGTERM stop every sync cleanly (exit 0)."""
    return asyncio.run(_main(specs, options, after_initial))


async def _main(
    specs: Sequence[SyncSpec], options: RunOptions, after_initial: AfterInitial | None
) -> int:
    state_dir = specs[0].state_dir
    console = Console(options.verbose)
    log = SyncLog(state_dir)
    board = StatusBoard(state_dir)
    sessions = [Session(spec, options, console, log, board) for spec in specs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(s.run(), name=s.spec.name) for s in sessions]
    extra: list[asyncio.Task[None]] = []
    if after_initial is not None:
        extra.append(asyncio.create_task(_after(sessions, after_initial)))
    stopper = asyncio.create_task(stop.wait())
    failed: list[str] = []
    try:
        pending = set(tasks)
        while pending:
            done, _ = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                console.line("podsync: stopping (waiting for transfers to end cleanly)")
                break
            for task in done:
                pending.discard(task)
                exc = task.exception()
                if isinstance(exc, PodsyncError):
                    failed.append(f"[{task.get_name()}] {exc}")
                elif exc is not None:
                    raise exc
            if failed and options.watch:
                break
    finally:
        for task in tasks + extra:
            task.cancel()
        await asyncio.gather(*tasks, *extra, return_exceptions=True)
        stopper.cancel()
        for session in sessions:
            if board.rows[session.spec.name].state not in ("halted", "error"):
                board.update(session.spec.name, state="stopped")
        board.flush()
        log.close()
    for line in failed:
        console.line(f"podsync: {line}")
    return EXIT_RUNTIME if failed else EXIT_OK


async def _after(sessions: Sequence[Session], hook: AfterInitial) -> None:
    waiting = [s.initial_done.wait() for s in sessions if s.spec.wait_initial_sync]
    await asyncio.gather(*waiting)
    await hook(sessions)

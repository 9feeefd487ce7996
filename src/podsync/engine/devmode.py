"""`podsync dev` after the initial syncs: stream the selected containers' logs, or open a
terminal in the first one.

Owns: multi-container log streaming (each line prefixed and coloured by container) and the
``--terminal`` shell. May import: the standard library, rich, ``podsync.transport``.

Log streaming follows each sync: when a pod is replaced and the sync reconnects to the new one,
the stream moves to the new pod too.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from podsync.engine.session import Session

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")


async def stream_logs(sessions: Sequence[Session], console: Console | None = None) -> None:
    """Until cancelled: every session's current container log, line by line."""
    out = console or Console(highlight=False, soft_wrap=True)
    lock = threading.Lock()
    await asyncio.gather(
        *(
            _follow(session, COLOURS[i % len(COLOURS)], out, lock)
            for i, session in enumerate(sessions)
        )
    )


async def _follow(session: Session, colour: str, out: Console, lock: threading.Lock) -> None:
    while True:
        await session.connected.wait()
        transport = session.transport
        target = getattr(transport, "target", None)
        api = getattr(transport, "api", None)
        if target is None or api is None:
            return  # not a Kubernetes target: nothing to stream
        prefix = f"[{target.pod}:{target.container}] "
        stop = threading.Event()
        try:
            await _in_daemon_thread(
                functools.partial(_read_log, api, target, colour, prefix, out, lock, stop)
            )
        finally:
            stop.set()
        # The stream ended (pod gone or restarted): wait for the sync to move on.
        while session.transport is transport:
            await asyncio.sleep(0.5)


async def _in_daemon_thread(work: Callable[[], None]) -> None:
    """Run blocking ``work`` in a daemon thread: unlike the default executor, a read that
    blocks forever (a log stream) never holds up podsync's exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def body() -> None:
        try:
            work()
        finally:
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=body, name="podsync-logs", daemon=True).start()
    await done


def _read_log(
    api: Any,
    target: Any,
    colour: str,
    prefix: str,
    out: Console,
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    from podsync.errors import TransportError
    from podsync.transport.k8s_rest import open_log_stream

    try:
        stream = open_log_stream(api, target.namespace, target.pod, target.container, 100)
    except TransportError as exc:  # the pod went away between selection and here
        with lock:
            out.print(Text(prefix + f"(logs unavailable: {exc})", style=colour))
        return
    pending = b""
    try:
        while not stop.is_set():
            chunk = stream.read(4096)
            if not chunk:
                return  # connection closed: the caller waits for the next pod
            pending += chunk
            *lines, pending = pending.split(b"\n")
            with lock:
                for line in lines:
                    text = Text(prefix, style=f"bold {colour}")
                    text.append(line.decode("utf-8", "replace"))
                    out.print(text)
    finally:
        stream.close()


async def open_terminal(session: Session) -> int:
    """An interactive shell in the session's container (kubectl exec -it); its exit code."""
    await session.connected.wait()
    target = session.transport.target
    api = session.transport.api
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("podsync: --terminal needs kubectl on PATH", file=sys.stderr)
        return 1
    argv = [kubectl]
    if api.context:
        argv += ["--context", api.context]
    argv += ["exec", "-it", "-n", target.namespace, target.pod, "-c", target.container, "--"]
    argv += ["sh", "-c", "command -v bash >/dev/null && exec bash || exec sh"]
    return await asyncio.to_thread(lambda: subprocess.call(argv))


async def logs_hook(sessions: Sequence[Session]) -> None:
    """runner hook for `podsync dev`: stream logs until Ctrl-C."""
    await stream_logs(sessions)


async def terminal_hook(sessions: Sequence[Session]) -> None:
    """runner hook for `podsync dev --terminal`: when the shell exits, podsync stops."""
    await open_terminal(sessions[0])

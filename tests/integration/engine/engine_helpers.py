"""Helpers for driving a real sync engine in-process against a local target.

Owns: :class:`EngineThread` (one ``Session`` running in a background event loop), tree
fingerprints of a folder, and finding/killing the agent process that serves a given root.
May import: the standard library, ``podsync.engine`` (to build and run a session).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from podsync.engine.report import Console, StatusBoard, SyncLog
from podsync.engine.session import Session
from podsync.engine.spec import RunOptions, SyncSpec, TargetSpec

#: What a path holds, as the test compares it: ("d",), ("f", content, executable), ("l", target).
Node = tuple[Any, ...]


def local_spec(
    local: Path,
    far: Path,
    *,
    exclude: tuple[str, ...] = (),
    upload_exclude: tuple[str, ...] = (),
    download_exclude: tuple[str, ...] = (),
    bandwidth_upload: int | None = None,
) -> SyncSpec:
    """A sync of ``local`` with the folder ``far`` through the real agent (a subprocess)."""
    return SyncSpec(
        name="machine",
        local_root=local,
        target=TargetSpec("local", local_dir=far),
        state_dir=local / ".devspace",
        exclude=exclude,
        upload_exclude=upload_exclude,
        download_exclude=download_exclude,
        bandwidth_upload=bandwidth_upload,
    )


class EngineThread:
    """A ``Session`` (initial sync, then watch, reconnecting on failures) in its own thread."""

    def __init__(self, spec: SyncSpec) -> None:
        self.spec = spec
        self.output = io.StringIO()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session, self.task = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(
            10
        )

    async def _start(self) -> tuple[Session, asyncio.Task[None]]:
        state = self.spec.state_dir
        session = Session(
            self.spec,
            RunOptions(watch=True),
            Console(verbose=True, stream=self.output),
            SyncLog(state),
            StatusBoard(state),
        )
        return session, asyncio.ensure_future(session.run())

    async def _cancel(self) -> None:
        """Cancel the session as the CLI does on Ctrl-C, and wait for its clean-up."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    @property
    def state(self) -> str:
        return self.session.board.rows[self.spec.name].state

    @property
    def message(self) -> str | None:
        return self.session.board.rows[self.spec.name].message

    def failure(self) -> str | None:
        """Why the engine stopped (it never should while the test runs), else None."""
        if not self.task.done():
            return None
        exc = None if self.task.cancelled() else self.task.exception()
        return f"engine stopped: {exc!r}\n{self.output.getvalue()}"

    def watching(self) -> bool:
        return self.session.initial_done.is_set() and self.state == "watching"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cancel(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.session.log.close()


def tree(root: Path, skip_top: frozenset[str] = frozenset()) -> dict[str, Node]:
    """Every path below ``root`` (not following symlinks), top-level names in ``skip_top``
    left out; a path that changes while being read is reported as ("?",)."""
    out: dict[str, Node] = {}
    for rel, full in _walk(root, ""):
        if rel.split("/", 1)[0] in skip_top:
            continue
        out[rel] = node(full)
    return out


def node(full: str) -> Node:
    try:
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            return ("d",)
        if stat.S_ISLNK(st.st_mode):
            return ("l", os.readlink(full))
        with open(full, "rb") as handle:
            data = handle.read()
        return ("f", data, bool(st.st_mode & stat.S_IXUSR))
    except OSError:
        return ("?",)


def _walk(root: Path, prefix: str) -> Iterator[tuple[str, str]]:
    try:
        entries = sorted(os.scandir(os.path.join(root, prefix) if prefix else root), key=_name)
    except OSError:
        return
    for entry in entries:
        rel = f"{prefix}/{entry.name}" if prefix else entry.name
        yield rel, entry.path
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, rel)


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def file_contents(root: Path) -> set[bytes]:
    """The content of every regular file anywhere below ``root``."""
    found: set[bytes] = set()
    for _, full in _walk(root, ""):
        value = node(full)
        if value[0] == "f":
            found.add(value[1])
    return found


def agent_pids(far_root: Path) -> list[int]:
    """Processes running ``... agent-*.pyz serve <far_root>`` (the engine's agent)."""
    wanted = str(far_root.resolve())
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        if (
            "serve" in argv
            and argv[-1] == wanted
            and any(os.path.basename(a).startswith("agent-") for a in argv)
        ):
            pids.append(int(entry))
    return pids


def kill_agents(far_root: Path) -> int:
    """SIGKILL the agents serving ``far_root``; how many were killed."""
    killed = 0
    for pid in agent_pids(far_root):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed

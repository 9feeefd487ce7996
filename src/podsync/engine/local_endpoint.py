"""The folder on this machine.

Owns: running ``podsync.replica`` off the event loop and the local watcher. May import:
``podsync.core``, ``podsync.replica``, ``podsync.engine.endpoint``, ``podsync.engine.hintbuffer``.

Local deletions and replacements go to the trash folder first (``.devspace/trash/``): sync
never destroys a local byte. Excluded directories are not watched: on Linux the replica's own
inotify watcher prunes them; elsewhere watchfiles watches the tree and a filter drops them.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from podsync.core.entry import DIR, FILE, LINK, Entry, Problem, Snapshot
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath
from podsync.engine.endpoint import DeleteItem, FileItem, WriteResult
from podsync.engine.hintbuffer import HintBuffer
from podsync.limits import CHUNK_BYTES
from podsync.replica import Replica
from podsync.replica.watch import make_watcher

#: Small files are read in batches of at most this many files / bytes per thread hop.
READ_BATCH_FILES = 128
READ_BATCH_BYTES = 4 * 1024 * 1024


def _changed(rep: Replica, path: RelPath, read: Entry) -> bool:
    """Whether ``path`` no longer is what was just read (then the copy is not sent as is);
    a path that cannot be looked at any more counts as changed."""
    try:
        now = rep.entry(path)
    except OSError:
        return True
    return now is None or not now.same_content(read)


class LocalSourceFile:
    def __init__(
        self,
        path: RelPath,
        entry: Entry,
        content: bytes | None,
        handle: Any,
        rep: Replica,
        problems: list[Problem] | None = None,
    ):
        self.path = path
        self.entry = entry
        self._content = content
        self._handle = handle
        self._rep = rep
        self._problems = problems if problems is not None else []
        self.changed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.entry.kind != FILE:
            return
        if self._content is not None:
            yield self._content
            return
        try:
            while True:
                try:
                    data = await asyncio.to_thread(self._handle.read, self.chunk_size)
                except OSError as exc:  # EIO mid-file: the target drops the partial copy
                    self._problems.append(Problem(self.path, f"cannot read: {exc.strerror}"))
                    self.changed = True
                    return
                if not data:
                    break
                yield data
            self.changed = await asyncio.to_thread(_changed, self._rep, self.path, self.entry)
        finally:
            self._handle.close()

    chunk_size = CHUNK_BYTES

    @property
    def streams(self) -> bool:
        """True when the content is read later, chunk by chunk (a large file)."""
        return self._handle is not None


class LocalEndpoint:
    side = "local"
    agent_description = "local folder"

    def __init__(
        self,
        root: Path,
        rules: Rules,
        trash_dir: Path,
        *,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.root = root
        self._rules = rules
        self._replica = Replica(str(root), prune=rules.prune, trash_dir=str(trash_dir))
        self.mtime_granularity_ns = self._replica.mtime_granularity_ns
        self._warn = warn
        self._hints = HintBuffer()
        #: When each hinted change happened, and when each write was committed (local wall
        #: clock): the latency measurement reads (and clears) them (``engine.latency``).
        self.event_times = self._hints.times
        self.applied_at: dict[RelPath, float] = {}
        self._watcher: Any = None
        self._stop = threading.Event()
        self.read_problems: list[Problem] = []
        #: Paths the last scan could not read (``Replica.unreadable``): their state is
        #: unknown, so the engine keeps what it knew there (``core.paths.keep_unknown``).
        self.unreadable: list[RelPath] = []
        self.chunk_size = CHUNK_BYTES

    async def start(self, watch: bool) -> None:
        root = self.root
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._replica.cleanup_temps)
        if watch:
            await self._start_watcher()

    async def _start_watcher(self) -> None:
        loop = asyncio.get_running_loop()
        if sys.platform.startswith("linux"):
            self._watcher = make_watcher(str(self.root), self._rules.prune)
            self._watcher.start()

            def pump() -> None:
                while not self._stop.is_set():
                    paths = self._watcher.wait(0.5)
                    if paths and not self._stop.is_set():
                        seen = time.time()  # wait() returns as soon as inotify has events
                        loop.call_soon_threadsafe(self._hints.add, paths, seen)

            threading.Thread(target=pump, name="podsync-local-watch", daemon=True).start()
        else:  # pragma: no cover - exercised on macOS/Windows only
            self._watcher = asyncio.create_task(self._watchfiles())

    async def _watchfiles(self) -> None:  # pragma: no cover - non-Linux hosts
        from watchfiles import awatch

        root = self.root.resolve()
        async for changes in awatch(root, step=10, debounce=200, stop_event=None):
            paths: list[RelPath] = []
            for _, raw in changes:
                try:
                    rel = Path(raw).resolve().relative_to(root).as_posix()
                except ValueError:
                    continue
                paths.append(RelPath("" if rel == "." else rel))
            if paths:
                self._hints.add(paths)

    async def close(self) -> None:
        self._stop.set()
        if isinstance(self._watcher, asyncio.Task):
            self._watcher.cancel()
        elif self._watcher is not None:
            await asyncio.to_thread(self._watcher.close)

    # -- observe ------------------------------------------------------------------------
    async def scan(self, under: Sequence[RelPath] = ()) -> Snapshot:
        snapshot = await asyncio.to_thread(self._replica.scan, list(under))
        self.unreadable = list(self._replica.unreadable)
        self._drain_warnings()
        return snapshot

    def _drain_warnings(self) -> None:
        for warning in self._replica.warnings:
            self._warn(warning)
        del self._replica.warnings[:]

    async def digests(self, paths: Sequence[RelPath]) -> dict[RelPath, str | None]:
        return await asyncio.to_thread(lambda: {p: self._replica.digest(p) for p in paths})

    async def hints(self) -> list[RelPath]:
        return await self._hints.take()

    def _open(self, path: RelPath) -> LocalSourceFile | None:
        rep = self._replica
        opened = rep.open_read(path)
        if opened is None:
            entry = rep.entry(path)
            if entry is None or entry.kind == FILE:
                return None
            return LocalSourceFile(path, entry, None, None, rep)
        entry, handle = opened
        if entry.size <= self.chunk_size:
            with handle:
                content = handle.read()  # OSError: a read problem (see _open_batch)
            source = LocalSourceFile(path, entry, content, None, rep)
            source.changed = _changed(rep, path, entry)
            return source
        source = LocalSourceFile(path, entry, None, handle, rep, self.read_problems)
        source.chunk_size = self.chunk_size
        return source

    def _open_batch(self, paths: Sequence[RelPath]) -> tuple[list[LocalSourceFile], int]:
        """Open files until READ_BATCH_BYTES of content are loaded or a large file (streamed
        later) is opened: one thread hop per batch instead of one per file. Returns the
        sources and how many of ``paths`` were consumed."""
        out: list[LocalSourceFile] = []
        loaded = 0
        for count, path in enumerate(paths, 1):
            try:
                source = self._open(path)
            except OSError as exc:
                self.read_problems.append(Problem(path, f"cannot read: {exc.strerror or exc}"))
                continue
            if source is None:
                continue
            out.append(source)
            loaded += source.entry.size if source.entry.kind == FILE else 0
            if loaded >= READ_BATCH_BYTES or source.streams:
                return out, count
        return out, len(paths)

    async def read(self, paths: Sequence[RelPath]) -> AsyncIterator[LocalSourceFile]:
        todo = list(paths)
        at = 0
        while at < len(todo):
            batch, consumed = await asyncio.to_thread(
                self._open_batch, todo[at : at + READ_BATCH_FILES]
            )
            at += consumed
            for source in batch:
                yield source

    # -- change ---------------------------------------------------------------------------
    async def write(self, items: AsyncIterator[FileItem]) -> WriteResult:
        written: dict[RelPath, Entry | None] = {}
        problems: list[Problem] = []
        async for item in items:
            try:
                outcome = await self._write_one(item)
            except OSError as exc:
                outcome = Problem(item.path, f"cannot write: {exc.strerror or exc}")
            if isinstance(outcome, Problem):
                problems.append(outcome)
            else:
                written[item.path] = outcome
                self.applied_at[item.path] = time.time()
        return WriteResult(written, problems)

    async def _write_one(self, item: FileItem) -> Entry | Problem:
        rep = self._replica
        if item.entry.kind == DIR:
            return await asyncio.to_thread(rep.make_dir, item.path, item.entry, item.expect)
        if item.entry.kind == LINK:
            return await asyncio.to_thread(rep.make_link, item.path, item.entry, item.expect)
        chunks = item.chunks
        if chunks is None:
            return Problem(item.path, "file without content")
        if item.entry.size <= CHUNK_BYTES:
            parts = [data async for data in chunks]
            changed = bool(getattr(chunks, "changed", False))
            return await asyncio.to_thread(self._write_small, item, b"".join(parts), changed)
        writer = await asyncio.to_thread(rep.begin_write, item.path, item.entry, item.expect)
        try:
            async for data in chunks:
                await asyncio.to_thread(writer.write, data)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        if getattr(chunks, "changed", False):
            await asyncio.to_thread(writer.abort)
            return Problem(item.path, "changed while being sent; will retry")
        result: Entry | Problem = await asyncio.to_thread(writer.commit)
        return result

    def _write_small(self, item: FileItem, content: bytes, changed: bool) -> Entry | Problem:
        if changed:
            return Problem(item.path, "changed while being sent; will retry")
        writer = self._replica.begin_write(item.path, item.entry, item.expect)
        try:
            writer.write(content)
        except BaseException:
            writer.abort()
            raise
        result: Entry | Problem = writer.commit()
        return result

    async def delete(self, items: Sequence[DeleteItem]) -> WriteResult:
        def run() -> WriteResult:
            written: dict[RelPath, Entry | None] = {}
            problems: list[Problem] = []
            for item in items:
                outcome = self._replica.delete(item.path, item.expect)
                if isinstance(outcome, Problem):
                    problems.append(outcome)
                else:
                    written[item.path] = None
            return WriteResult(written, problems)

        return await asyncio.to_thread(run)

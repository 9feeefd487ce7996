"""One sync pair from start to stop: connect, initial sync, watch, reconnect.

Owns: the life cycle of one SyncSpec. May import: everything in ``podsync.engine``,
``podsync.core``. Decisions come from the pure planners; this module only sequences them.

Life cycle: connect -> the first pass (``engine.firstpass``: the spec's initial sync, or a
resume from the last agreed state, saved by an earlier run or kept across a reconnect) ->
the watch loop (``engine.watch``: hints from either side -> rescan the hinted paths on that
side -> reconcile -> execute). Transport failures in the watch phase reconnect with backoff;
a SafetyHalt stops the sync. The last agreed state is saved (``engine.state``) a second after
each change and when the sync stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from podsync.core.entry import Snapshot
from podsync.core.excludes import Rules
from podsync.core.gitignore import literal_pattern
from podsync.core.paths import RelPath
from podsync.core.plan import Ancestor, Plan, format_size
from podsync.engine.connect import Remote, connect
from podsync.engine.executor import Executor, Outcome
from podsync.engine.firstpass import FirstPass
from podsync.engine.local_endpoint import LocalEndpoint
from podsync.engine.measure import MeasuredWatch
from podsync.engine.onupload import OnUpload
from podsync.engine.report import Console, Progress, StatusBoard, SyncLog, now_iso
from podsync.engine.spec import RunOptions, SyncSpec
from podsync.engine.state import PairKey, StateStore
from podsync.engine.status import SyncStatus
from podsync.engine.watch import WatchPhase
from podsync.errors import AgentError, ProtocolError, SafetyHalt, TransportError

RECONNECT_DELAYS = (0.5, 1, 2, 4, 8, 15)
#: The persisted state is written this long after the change that made it stale (a burst
#: of batches is one write), and when the sync stops.
SAVE_DELAY_SECONDS = 1.0
#: Saving may use at most ~1/SAVE_COST_FACTOR of the time while edits go on.
SAVE_COST_FACTOR = 20.0


def _rules(spec: SyncSpec) -> Rules:
    """The entry's exclude rules, plus podsync's own state folder wherever it lies inside the
    local folder (``--local-path ..``): logs, status, conflict records and saved states are
    never synced, so the container can neither read nor forge them."""
    root = os.path.realpath(spec.local_root)
    state = os.path.realpath(spec.state_dir)
    inside = os.path.relpath(state, root)
    if inside != "." and inside != ".." and not inside.startswith("../"):
        with contextlib.suppress(ValueError):  # a state path that is not text: top-level only
            extra = (literal_pattern(inside),)
            return Rules(spec.exclude + extra, spec.upload_exclude, spec.download_exclude)
    return Rules(spec.exclude, spec.upload_exclude, spec.download_exclude)


class Session(FirstPass, MeasuredWatch, WatchPhase):
    def __init__(
        self,
        spec: SyncSpec,
        options: RunOptions,
        console: Console,
        log: SyncLog,
        board: StatusBoard,
    ) -> None:
        self.spec = spec
        self.options = options
        self.console = console
        self.log = log
        self.board = board
        self.rules = _rules(spec)
        self.ancestor: Ancestor = {}
        self.L: Snapshot = {}
        self.R: Snapshot = {}
        self.initial_done = asyncio.Event()
        #: Set once connected; ``transport`` is then the current one (podsync dev streams the
        #: selected container's logs through it).
        self.connected = asyncio.Event()
        self.transport: Any = None
        self._retry: set[RelPath] = set()
        self._retries: dict[RelPath, int] = {}
        self._held: set[RelPath] = set()
        self._held_at = 0.0
        self._held_first = 0.0
        #: When the current connection reached the watch phase (None: not yet).
        self.watching_since: float | None = None
        self.conflict_count = 0
        self.executor: Executor | None = None
        self._remote_desc = spec.target.describe()
        self.store = StateStore(
            spec.state_dir,
            PairKey(str(spec.local_root), self._remote_desc, spec.container_path or ""),
        )
        #: Identities of the two folders the ancestor describes (see engine.state).
        self._fsid: str | None = None
        self._local_id: tuple[int, int] | None = None
        self._dirty = asyncio.Event()
        self._save_cost = 0.0
        self._unused_state: Ancestor = {}
        self.on_upload = OnUpload(
            spec.name, spec.on_upload, console=console, log=log, board=board,
            enabled=options.watch and not options.dry_run,
        )  # fmt: skip
        board.add(
            SyncStatus(
                name=spec.name,
                local=str(spec.local_root),
                remote=self._remote_desc + ":" + (spec.container_path or "$WORKDIR"),
                agent="",
                state="starting",
                progress=None,
                conflicts=0,
                last_activity_time=None,
                last_activity=None,
                uploaded_files=0,
                uploaded_bytes=0,
                downloaded_files=0,
                downloaded_bytes=0,
                message=None,
            )
        )

    # -- reporting ------------------------------------------------------------------------
    def say(self, message: str, level: str = "INFO", console: bool = True) -> None:
        self.log.write(self.spec.name, level, message)
        if console:
            self.console.line(f"[{self.spec.name}] {message}")

    def state(self, state: str, message: str | None = None, **extra: Any) -> None:
        self.board.update(self.spec.name, force=True, state=state, message=message, **extra)

    def _activity(self, what: str) -> None:
        changes: dict[str, Any] = {"last_activity_time": now_iso(), "last_activity": what}
        if self.executor is not None:
            t = self.executor.totals
            changes.update(
                uploaded_files=t.uploaded_files,
                uploaded_bytes=t.uploaded_bytes,
                downloaded_files=t.downloaded_files,
                downloaded_bytes=t.downloaded_bytes,
            )
        changes["conflicts"] = self.conflict_count
        self.board.update(self.spec.name, **changes)

    def _report(self, out: Outcome, phase: str) -> None:
        for conflict in out.conflicts:
            self.conflict_count += 1
            self.say(f"conflict: {conflict.path}: {conflict.reason}", "WARN")
        for problem in out.problems:
            self.say(f"problem: {problem.path}: {problem.message}", "WARN")
        parts = []
        if out.uploaded:
            parts.append(f"uploaded {len(out.uploaded)} ({format_size(out.bytes_up)})")
        if out.downloaded:
            parts.append(f"downloaded {len(out.downloaded)} ({format_size(out.bytes_down)})")
        if out.deleted_remote:
            parts.append(f"deleted {len(out.deleted_remote)} in the container")
        if out.deleted_local:
            parts.append(f"deleted {len(out.deleted_local)} locally (kept in trash)")
        if not parts:
            return
        what = ", ".join(parts)
        sample = (out.uploaded + out.downloaded + out.deleted_remote + out.deleted_local)[:3]
        detail = " ".join(sample) + (" ..." if len(sample) >= 3 else "")
        full = self.options.verbose or phase in ("initial sync", "resume")
        self.say(f"{phase}: {what} in {out.seconds * 1000:.0f} ms: {detail}", console=full)
        if not full:  # the watch phase: one short line per batch
            self.console.line(f"[{self.spec.name}] {_batch_line(out)}")
        self._activity(what)

    def _where(self, remote: Remote) -> str:
        """The far side as the user knows it: the pod actually selected for Kubernetes."""
        if self.spec.target.kind == "kubernetes":
            return str(remote.transport.description).removeprefix("pod ")
        return self._remote_desc

    # -- life cycle -----------------------------------------------------------------------
    async def run(self) -> None:
        if self.options.reset_state and not self.options.dry_run:
            self.store.forget()
        try:
            await self._run()
        finally:
            if self._dirty.is_set():
                self._save_now()

    async def _run(self) -> None:
        attempt = 0
        watch = self.options.watch and not self.options.dry_run
        while True:
            try:
                await self._connected_run(watch)
                return
            except SafetyHalt as exc:
                self.state("halted", str(exc))
                self.say(f"halted: {exc}", "ERROR")
                raise
            except (TransportError, AgentError, ProtocolError) as exc:
                if not watch or not self.initial_done.is_set():
                    self.state("error", str(exc))
                    raise
                if self.watching_since is not None:
                    attempt = 0  # that connection worked: start the backoff over
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                self.state("reconnecting", f"{exc} (retrying in {delay:g} s)")
                self.say(f"connection lost: {exc}; reconnecting in {delay:g} s", "WARN")
                await asyncio.sleep(delay)

    async def _connected_run(self, watch: bool) -> None:
        spec = self.spec
        self.watching_since = None
        local = LocalEndpoint(
            spec.local_root,
            self.rules,
            spec.state_dir / "trash",
            warn=lambda w: self.say(f"warning: {w}", "WARN"),
        )
        await local.start(watch)
        t0 = time.monotonic()
        remote: Remote | None = None
        early = self._early(local)
        try:
            remote = await connect(
                spec,
                self.rules,
                watch=watch,
                log=lambda line: self.log.write(spec.name, "AGENT", line),
                say=self.say,
            )
            self.transport = remote.transport
            self.on_upload.attach(remote.transport, remote.root)
            self.connected.set()
            self.board.update(
                spec.name,
                agent=remote.why,
                remote=f"{self._where(remote)}:{remote.root}",
            )
            where = f"{self._where(remote)}:{remote.root}"
            self.say(f"connected: {spec.local_root} <-> {where} ({remote.why})")
            self.log.write(
                spec.name, "INFO", f"connect took {(time.monotonic() - t0) * 1000:.0f} ms"
            )
            await self._first_pass(local, remote.endpoint, early)
            if watch:
                self.state("watching")
                self.watching_since = time.monotonic()
                self.say("watching for changes (Ctrl-C to stop)")
                saver = asyncio.ensure_future(self._saver())
                try:
                    await self._watch(local, remote.endpoint)
                finally:
                    saver.cancel()
        finally:
            early.discard()
            with contextlib.suppress(Exception):
                await self.on_upload.detach()
            with contextlib.suppress(Exception):
                await local.close()
            if remote is not None:
                with contextlib.suppress(Exception):
                    await remote.endpoint.close()

    # -- persisted state ----------------------------------------------------------------
    def _save_now(self) -> None:
        """Write the last agreed state (blocking: used when the sync stops)."""
        self._dirty.clear()
        if self.options.dry_run or not self.initial_done.is_set():
            return
        try:
            self.store.save(dict(self.ancestor), self._fsid, self._local_id)
        except OSError as exc:
            self.say(f"warning: cannot save the sync state: {exc.strerror or exc}", "WARN")

    async def _save_soon(self) -> None:
        """Write the last agreed state off the event loop. A state whose far side cannot be
        identified (no fsid) is saved too: it will not be resumed from, but it still tells
        the next run what the local folder held (see FirstPass._decide)."""
        self._dirty.clear()
        if self.options.dry_run or not self.initial_done.is_set():
            return
        snapshot = dict(self.ancestor)
        started = time.monotonic()
        try:
            await asyncio.to_thread(self.store.save, snapshot, self._fsid, self._local_id)
        except OSError as exc:
            self.say(f"warning: cannot save the sync state: {exc.strerror or exc}", "WARN")
        self._save_cost = time.monotonic() - started

    async def _saver(self) -> None:
        """Save the state a little after each change (one write per burst), and never more
        often than SAVE_COST_FACTOR times the cost of a save (a 100k-entry tree takes
        ~0.1-0.2 s to write: at most one write every few seconds while edits go on)."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(max(SAVE_DELAY_SECONDS, SAVE_COST_FACTOR * self._save_cost))
            await self._save_soon()

    async def _execute(
        self, plan: Plan, local: Any, remote: Any, phase: str, progress: bool = False
    ) -> None:
        bar: Progress | None = None
        if progress:
            writes = plan.uploads + plan.downloads
            nbytes = sum(a.entry.size for a in writes if a.entry.kind == "file")
            bar = Progress(self.console, self.spec.name, len(writes), nbytes)

        def advance(files: int, nbytes: int) -> None:
            if bar is not None:
                bar.advance(files, nbytes)
                self.board.update(self.spec.name, progress=bar.fraction)

        if self.executor is None:
            self.executor = Executor(
                local,
                remote,
                self.ancestor,
                self.L,
                self.R,
                self.spec.state_dir / "conflicts",
                on_progress=advance,
            )
        else:
            self.executor.local, self.executor.remote = local, remote
            self.executor.L, self.executor.R = self.L, self.R
            self.executor.on_progress = advance
        try:
            out = await self.executor.run(plan)
        finally:
            if bar is not None:
                bar.finish()
        self.on_upload.note(plan, out)
        self._report(out, phase)
        self._measure(out, phase, local, remote)
        self._note_problems(out)
        self._dirty.set()


def _batch_line(out: Outcome) -> str:
    """The watch phase's console line for one batch (``report.batch_line``)."""
    from podsync.engine.report import batch_line

    return batch_line(
        [
            ("uploaded {n}", out.uploaded),
            ("downloaded {n}", out.downloaded),
            ("deleted {n} in the container", out.deleted_remote),
            ("deleted {n} locally (kept in trash)", out.deleted_local),
        ]
    )

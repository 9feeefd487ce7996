"""One sync pair from start to stop: connect, initial sync, watch, reconnect.

Owns: the life cycle of one SyncSpec. May import: everything in ``podsync.engine``,
``podsync.core``. Decisions come from the pure planners; this module only sequences them.

Life cycle: connect -> (first time) the spec's initial sync, or (after a reconnect) a
three-way reconcile against the last agreed state (a container that comes back empty is
treated as a fresh one: initial sync with local authority, never local deletions) -> watch
loop: hints from either side -> rescan the hinted paths on that side -> reconcile -> execute.
Transport failures in the watch phase reconnect with backoff; a SafetyHalt stops the sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from podsync.core.entry import Snapshot
from podsync.core.excludes import Rules
from podsync.core.initial import InitialResult, plan_initial_sync
from podsync.core.paths import RelPath, minimal_roots
from podsync.core.plan import Ancestor, Plan, format_size
from podsync.core.reconcile import detect_mass_deletion, reconcile
from podsync.core.resume import plan_resume
from podsync.engine.connect import Remote, connect
from podsync.engine.executor import Executor, Outcome
from podsync.engine.local_endpoint import LocalEndpoint
from podsync.engine.report import Console, Progress, StatusBoard, SyncLog, now_iso
from podsync.engine.spec import RunOptions, SyncSpec
from podsync.engine.state import PairKey, Saved, StateError, StateStore, local_identity
from podsync.engine.status import SyncStatus
from podsync.errors import AgentError, ProtocolError, SafetyHalt, TransportError

RECONNECT_DELAYS = (0.5, 1, 2, 4, 8, 15)
#: A path whose transfer hit a problem is looked at again after this pause, at most
#: MAX_RETRIES times in a row (then only a new change of it brings it back).
RETRY_SECONDS = 0.25
MAX_RETRIES = 5
#: The persisted state is written this long after the change that made it stale (a burst
#: of batches is one write), and when the sync stops.
SAVE_DELAY_SECONDS = 1.0
#: How a user who meant to delete everything on one side goes on after a halt.
HALT_HINT = (
    " (if that is what you want: start again with --reset-state, and the spec's initial"
    " sync applies)"
)


def _merge(cache: Snapshot, roots: Sequence[RelPath], fresh: Snapshot) -> bool:
    """Replace what ``cache`` holds under ``roots`` by ``fresh`` (one pass over the cache:
    this runs for every batch of the watch phase). True when some path vanished."""
    if "" in roots:
        gone = not cache.keys() <= fresh.keys()
        cache.clear()
    else:
        exact = set(roots)
        below = tuple(root + "/" for root in roots)
        known = [p for p in cache if p in exact or p.startswith(below)]
        gone = any(p not in fresh for p in known)
        for p in known:
            del cache[p]
    cache.update(fresh)
    return gone


def _initial(
    ancestor: Ancestor, local: Snapshot, remote: Snapshot, rules: Rules, **options: Any
) -> InitialResult:
    """``plan_initial_sync`` with the signature of ``plan_resume`` (no ancestor)."""
    return plan_initial_sync(local, remote, rules, **options)


class Session:
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
        self.rules = Rules(spec.exclude, spec.upload_exclude, spec.download_exclude)
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
        self.say(
            f"{phase}: {what} in {out.seconds * 1000:.0f} ms: {detail}",
            console=self.options.verbose or phase in ("initial sync", "resume"),
        )
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
        try:
            remote = await connect(
                spec,
                self.rules,
                watch=watch,
                log=lambda line: self.log.write(spec.name, "AGENT", line),
                say=self.say,
            )
            self.transport = remote.transport
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
            await self._first_pass(local, remote.endpoint)
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
            with contextlib.suppress(Exception):
                await local.close()
            if remote is not None:
                with contextlib.suppress(Exception):
                    await remote.endpoint.close()

    async def _first_pass(self, local: LocalEndpoint, remote: Any) -> None:
        """The spec's initial sync, or a resume (from the state saved by an earlier run, or
        from the last agreed state of this process after a reconnect)."""
        started = time.monotonic()
        self.L, self.R = await asyncio.gather(local.scan(), remote.scan())
        scanned = time.monotonic()
        granularity = max(local.mtime_granularity_ns, remote.mtime_granularity_ns)
        fsid = getattr(remote, "fsid", None)
        local_id = local_identity(self.spec.local_root)
        restart = not self.initial_done.is_set()
        if restart:
            self._adopt_saved(fsid, local_id)
        elif fsid is not None and self._fsid is not None and fsid != self._fsid:
            self.say(
                "the container is a new one (another filesystem): initial sync with local authority"
            )
            self.ancestor.clear()
        self._fsid, self._local_id = fsid, local_id
        if self.ancestor and detect_mass_deletion(self.ancestor, self.R, self.rules):
            self.say("the container side looks new or emptied: initial sync with local authority")
            self.ancestor.clear()
        if self.ancestor:
            problem = detect_mass_deletion(self.ancestor, self.L, self.rules, side="local")
            if problem:
                raise SafetyHalt(problem + HALT_HINT)
            if restart:
                result = await self._planned(local, remote, granularity, resume=True)
                plan = result
            else:
                plan = reconcile(
                    self.ancestor,
                    self.L,
                    self.R,
                    None,
                    self.rules,
                    upload_only=self.spec.upload_only,
                    download_only=self.spec.download_only,
                    granularity_ns=granularity,
                )
            phase = "resume" if restart else "resync"
        else:
            plan = await self._planned(local, remote, granularity, resume=False)
            phase = "initial sync"
        if self.options.dry_run:
            self.console.line(f"[{self.spec.name}] {phase} plan: {plan.summary()}")
            for line in plan.describe():
                self.console.line(f"  {line}")
            self.initial_done.set()
            return
        planned = time.monotonic()
        self.log.write(
            self.spec.name,
            "INFO",
            f"{phase}: compared {len(self.L)} local and {len(self.R)} container entries: scans"
            f" {(scanned - started) * 1000:.0f} ms, plan {(planned - scanned) * 1000:.0f} ms;"
            f" {plan.summary()}",
        )
        if restart and not plan.changes():
            self.say(
                f"{phase}: already in sync ({len(self.L)} entries compared in"
                f" {(planned - started) * 1000:.0f} ms)"
            )
        if restart:
            self.state("initial sync", progress=0.0)
        await self._execute(plan, local, remote, phase, progress=restart)
        self.log.write(
            self.spec.name,
            "INFO",
            f"{phase}: done in {(time.monotonic() - started) * 1000:.0f} ms"
            f" (transfers {(time.monotonic() - planned) * 1000:.0f} ms)",
        )
        self.initial_done.set()
        self._save_now()
        self.state("watching" if self.options.watch else "stopped", progress=None)

    def _adopt_saved(self, fsid: str | None, local_id: tuple[int, int] | None) -> None:
        """Take the state an earlier run saved, when it describes these two folders."""
        try:
            saved: Saved | None = self.store.load()
        except StateError as exc:
            self.say(f"warning: ignoring the saved sync state: {exc}", "WARN")
            return
        if saved is None or not saved.ancestor:
            return
        if saved.local_id != local_id:
            why = "the local folder is not the one it describes (recreated?)"
        elif fsid is None or saved.fsid != fsid:
            why = "the container is a new one (its filesystem changed)"
        else:
            self.ancestor.clear()
            self.ancestor.update(saved.ancestor)
            self.log.write(
                self.spec.name,
                "INFO",
                f"resuming from the state saved by an earlier run ({len(saved.ancestor)} records)",
            )
            return
        self.say(f"not resuming from the saved state: {why}; initial sync with local authority")

    async def _planned(
        self, local: LocalEndpoint, remote: Any, granularity: int, *, resume: bool
    ) -> Plan:
        """The initial-sync (or resume) plan, with content digests fetched where the rules
        need them."""
        digests: dict[RelPath, tuple[str | None, str | None]] = {}
        while True:
            result = (plan_resume if resume else _initial)(
                self.ancestor,
                self.L,
                self.R,
                self.rules,
                download_on_initial_sync=self.spec.download_on_initial_sync,
                upload_only=self.spec.upload_only,
                download_only=self.spec.download_only,
                granularity_ns=granularity,
                digests=digests,
            )
            if not result.needs_digest:
                return result.plan
            wanted = list(result.needs_digest)
            ours, theirs = await asyncio.gather(local.digests(wanted), remote.digests(wanted))
            for path in wanted:
                digests[path] = (ours.get(path), theirs.get(path))

    # -- persisted state ----------------------------------------------------------------
    def _save_now(self) -> None:
        """Write the last agreed state (blocking; small trees take milliseconds)."""
        self._dirty.clear()
        if self.options.dry_run or self._fsid is None or not self.initial_done.is_set():
            return
        try:
            self.store.save(dict(self.ancestor), self._fsid, self._local_id)
        except OSError as exc:
            self.say(f"warning: cannot save the sync state: {exc.strerror or exc}", "WARN")

    async def _saver(self) -> None:
        """Save the state a little after each change (one write per burst), off the loop."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(SAVE_DELAY_SECONDS)
            self._dirty.clear()
            if self._fsid is None:
                continue
            snapshot = dict(self.ancestor)
            try:
                await asyncio.to_thread(self.store.save, snapshot, self._fsid, self._local_id)
            except OSError as exc:
                self.say(f"warning: cannot save the sync state: {exc.strerror or exc}", "WARN")

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
        self._report(out, phase)
        self._note_problems(out)
        self._dirty.set()

    async def _watch(self, local: LocalEndpoint, remote: Any) -> None:
        granularity = max(local.mtime_granularity_ns, remote.mtime_granularity_ns)
        local_task = asyncio.ensure_future(local.hints())
        remote_task = asyncio.ensure_future(remote.hints())
        retry_task: asyncio.Future[list[RelPath]] | None = None
        try:
            while True:
                if retry_task is None and self._retry:
                    retry_task = asyncio.ensure_future(self._retry_later())
                waiting = {local_task, remote_task} | ({retry_task} if retry_task else set())
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                local_paths: list[RelPath] = []
                remote_paths: list[RelPath] = []
                if local_task in done:
                    local_paths = local_task.result()
                    local_task = asyncio.ensure_future(local.hints())
                if remote_task in done:
                    remote_paths = remote_task.result()
                    remote_task = asyncio.ensure_future(remote.hints())
                if retry_task is not None and retry_task in done:
                    # Paths that had a problem: look at both sides again.
                    again = retry_task.result()
                    retry_task = None
                    local_paths += again
                    remote_paths += again
                await self._sync_paths(local, remote, local_paths, remote_paths, granularity)
        finally:
            local_task.cancel()
            remote_task.cancel()
            if retry_task is not None:
                retry_task.cancel()

    async def _retry_later(self) -> list[RelPath]:
        """Paths whose last transfer hit a problem, after a short pause. A problem usually
        means the path changed meanwhile, and that change's own hint settles it; this is the
        safety net for when no hint comes (a poll that saw only the final state)."""
        await asyncio.sleep(RETRY_SECONDS)
        paths, self._retry = sorted(self._retry), set()
        return paths

    def _note_problems(self, out: Outcome) -> None:
        for problem in out.problems:
            tries = self._retries.get(problem.path, 0) + 1
            self._retries[problem.path] = tries
            if tries <= MAX_RETRIES:
                self._retry.add(problem.path)
            elif tries == MAX_RETRIES + 1:
                self.say(
                    f"giving up on {problem.path} until it changes again: {problem.message}",
                    "WARN",
                )
        for path in out.uploaded + out.downloaded + out.deleted_local + out.deleted_remote:
            self._retries.pop(path, None)

    def _check_local_root(self) -> None:
        """A hint of the whole local folder comes when it was deleted, moved, replaced or
        unmounted: a folder that is not the one being watched means starting over (watchers
        included), and the reconnect's checks halt if it is empty."""
        now = local_identity(self.spec.local_root)
        if now is None:
            raise SafetyHalt(
                f"the local folder {self.spec.local_root} vanished; halting instead of"
                " deleting its files in the container"
            )
        if self._local_id is not None and now != self._local_id:
            raise TransportError(f"the local folder {self.spec.local_root} was replaced")

    async def _sync_paths(
        self,
        local: Any,
        remote: Any,
        local_paths: list[RelPath],
        remote_paths: list[RelPath],
        granularity: int,
    ) -> None:
        started = time.monotonic()
        local_roots = minimal_roots(local_paths)
        remote_roots = minimal_roots(remote_paths)
        scans = []
        if local_roots:
            scans.append(local.scan(local_roots))
        if remote_roots:
            scans.append(remote.scan(remote_roots))
        results = await asyncio.gather(*scans)
        if local_roots:
            if "" in local_roots:
                self._check_local_root()
            if _merge(self.L, local_roots, results.pop(0)):
                problem = detect_mass_deletion(self.ancestor, self.L, self.rules, side="local")
                if problem:
                    raise SafetyHalt(problem + HALT_HINT)
        if remote_roots and _merge(self.R, remote_roots, results.pop(0)):
            problem = detect_mass_deletion(self.ancestor, self.R, self.rules)
            if problem:
                raise SafetyHalt(problem)
        roots = minimal_roots(local_roots + remote_roots)
        plan = reconcile(
            self.ancestor,
            self.L,
            self.R,
            None if "" in roots else roots,
            self.rules,
            upload_only=self.spec.upload_only,
            download_only=self.spec.download_only,
            granularity_ns=granularity,
        )
        if plan.is_empty():
            # Nothing to do there any more: a later problem at these paths starts a fresh
            # count of retries.
            for path in local_paths + remote_paths:
                self._retries.pop(path, None)
            return
        await self._execute(plan, local, remote, "sync")
        self.log.write(
            self.spec.name,
            "DEBUG",
            f"batch of {len(plan.actions)} took {(time.monotonic() - started) * 1000:.1f} ms",
        )

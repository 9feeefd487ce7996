"""The watch phase of a sync pair: hints from either side -> rescan the hinted paths ->
reconcile -> execute, with retries of paths that hit a problem and the mass-deletion halts.

Owns: :class:`WatchPhase`, a part of :class:`~podsync.engine.session.Session` kept in its own
module (it shares the session's state: caches, ancestor, options). May import: ``podsync.core``
and ``podsync.engine``'s lower modules (never ``session``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from podsync.core.entry import Snapshot
from podsync.core.excludes import Rules
from podsync.core.massdelete import detect_mass_deletion
from podsync.core.paths import RelPath, is_within, keep_unknown, minimal_roots
from podsync.core.plan import Ancestor, DeleteLocal, DeleteRemote, Download, Plan, Upload
from podsync.core.reconcile import reconcile
from podsync.engine.executor import Outcome
from podsync.engine.report import SyncLog
from podsync.engine.spec import SyncSpec
from podsync.engine.state import local_identity
from podsync.errors import SafetyHalt, TransportError

#: A path whose transfer hit a problem is looked at again after this pause, at most
#: MAX_RETRIES times in a row (then only a new change of it brings it back).
RETRY_SECONDS = 0.25
MAX_RETRIES = 5
#: Deletions are held until deleting has been quiet this long, so a burst (``rm -rf src/*``
#: arrives as many small batches) is judged as a whole by the mass-deletion rule before any
#: of it is propagated. Writes are never held.
DELETE_SETTLE_SECONDS = 0.25
#: ... but no longer than this after the first one: a tool that keeps creating and deleting
#: temporary files must not keep every deletion waiting forever.
DELETE_MAX_HOLD_SECONDS = 2.0


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


def hold_deletions(plan: Plan) -> tuple[Plan, set[RelPath]]:
    """Split ``plan`` into what runs now and the paths whose deletion waits: every pure
    deletion (no write of that path follows: a kind change runs at once) with everything the
    plan does at or below it."""
    written = {a.path for a in plan.actions if isinstance(a, (Upload, Download))}
    held = {
        a.path
        for a in plan.actions
        if isinstance(a, (DeleteRemote, DeleteLocal)) and a.path not in written
    }
    if not held:
        return plan, held
    now = [a for a in plan.actions if not any(is_within(a.path, h) for h in held)]
    return Plan(tuple(now)), held


class WatchPhase:
    """The watch loop and its retries (mixed into Session)."""

    spec: SyncSpec
    rules: Rules
    log: SyncLog
    ancestor: Ancestor
    L: Snapshot
    R: Snapshot
    _retry: set[RelPath]
    _retries: dict[RelPath, int]
    _local_id: tuple[int, int] | None
    #: Paths whose deletion waits for the burst to settle, and when the last one came.
    _held: set[RelPath]
    _held_at: float
    _held_first: float

    if TYPE_CHECKING:  # provided by Session

        def say(self, message: str, level: str = "INFO", console: bool = True) -> None: ...

        async def _execute(
            self, plan: Plan, local: Any, remote: Any, phase: str, progress: bool = False
        ) -> None: ...

    async def _watch(self, local: Any, remote: Any) -> None:
        granularity = max(local.mtime_granularity_ns, remote.mtime_granularity_ns)
        local_task = asyncio.ensure_future(local.hints())
        remote_task = asyncio.ensure_future(remote.hints())
        retry_task: asyncio.Future[list[RelPath]] | None = None
        held_task: asyncio.Future[list[RelPath]] | None = None
        try:
            while True:
                if retry_task is None and self._retry:
                    retry_task = asyncio.ensure_future(self._retry_later())
                if held_task is None and self._held:
                    held_task = asyncio.ensure_future(self._deletions_settled())
                waiting = {local_task, remote_task} | ({retry_task} if retry_task else set())
                if held_task is not None:
                    waiting.add(held_task)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if held_task is not None and held_task in done:
                    settled = held_task.result()
                    held_task = None
                    await self._sync_paths(local, remote, settled, settled, granularity, True)
                    continue
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
            for task in (retry_task, held_task):
                if task is not None:
                    task.cancel()

    def _halt_hint(self) -> str:
        """How a user who meant to delete everything locally goes on: what --reset-state
        does with this entry's options (the spec's initial sync runs)."""
        noun = self.spec.target.noun
        if self.spec.download_on_initial_sync or self.spec.download_only:
            then = f"the {noun}'s files would be downloaded again"
        else:
            then = f"the {noun}'s files are deleted there too"
        return f" (if you meant it, start again with --reset-state: {then})"

    async def _deletions_settled(self) -> list[RelPath]:
        """The held deletions, once no new one has come for DELETE_SETTLE_SECONDS (or
        DELETE_MAX_HOLD_SECONDS after the first one)."""
        while True:
            release = min(
                self._held_at + DELETE_SETTLE_SECONDS, self._held_first + DELETE_MAX_HOLD_SECONDS
            )
            wait = release - time.monotonic()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        paths, self._held = sorted(self._held), set()
        return paths

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
        release: bool = False,
    ) -> None:
        """Rescan the hinted paths, reconcile, execute. Deletions are held back (see
        DELETE_SETTLE_SECONDS) unless ``release``: the settled burst, judged as a whole."""
        started = time.monotonic()
        local_roots = minimal_roots(local_paths)
        remote_roots = minimal_roots(remote_paths)
        scans = []
        if local_roots:
            scans.append(local.scan(local_roots))
        if remote_roots:
            scans.append(remote.scan(remote_roots))
        results = await asyncio.gather(*scans)
        # What a scan could not read is unknown, not gone: keep what we knew there.
        if local_roots:
            if "" in local_roots:
                self._check_local_root()
            fresh = keep_unknown(results.pop(0), self.L, local.unreadable)
            if _merge(self.L, local_roots, fresh) or release:
                # Held deletions stay in the ancestor, so this sees the whole burst so far.
                problem = detect_mass_deletion(
                    self.ancestor, self.L, self.rules, side="local", far=self.spec.target.noun
                )
                if problem:
                    raise SafetyHalt(problem + self._halt_hint())
        unknown = getattr(remote, "unreadable", ())
        if remote_roots and (
            _merge(self.R, remote_roots, keep_unknown(results.pop(0), self.R, unknown)) or release
        ):
            problem = detect_mass_deletion(
                self.ancestor, self.R, self.rules, far=self.spec.target.noun
            )
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
        if not release:
            plan, held = hold_deletions(plan)
            if held:
                if not self._held:
                    self._held_first = time.monotonic()
                self._held |= held
                self._held_at = time.monotonic()
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

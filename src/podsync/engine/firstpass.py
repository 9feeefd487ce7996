"""The first pass of a connection: the spec's initial sync, or a resume from the last agreed
state (saved by an earlier run, or kept by this process across a reconnect).

Owns: :class:`FirstPass`, a part of :class:`~podsync.engine.session.Session` kept in its own
module (it shares the session's state), and the decision which of the two runs. May import:
``podsync.core`` and ``podsync.engine``'s lower modules (never ``session``).

A saved state is used only for the two folders it describes (``engine.state``): when the
container's filesystem id or the local folder's identity differs, the spec's initial sync runs
with local authority. A container that looks emptied is a new one (initial sync, never local
deletions); a local folder that looks emptied halts the sync.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from podsync.core.ancestor import adopt_finer_mtimes
from podsync.core.entry import Snapshot
from podsync.core.excludes import Rules
from podsync.core.initial import InitialResult, plan_initial_sync
from podsync.core.paths import RelPath, keep_unknown
from podsync.core.plan import Ancestor, Plan
from podsync.core.reconcile import detect_mass_deletion, reconcile
from podsync.core.resume import plan_resume
from podsync.engine.onupload import OnUpload
from podsync.engine.report import Console, SyncLog
from podsync.engine.spec import RunOptions, SyncSpec
from podsync.engine.state import Saved, StateError, StateStore, local_identity
from podsync.errors import SafetyHalt


def _initial(
    ancestor: Ancestor, local: Snapshot, remote: Snapshot, rules: Rules, **options: Any
) -> InitialResult:
    """``plan_initial_sync`` with the signature of ``plan_resume`` (no ancestor)."""
    return plan_initial_sync(local, remote, rules, **options)


class Early:
    """What the first pass of a start needs that no container is needed for, started before
    the connect so it overlaps the exec and the agent's start (~0.1 s of a 10k-file start, a
    fifth of a no-op run): the local scan and the saved state's load, in threads. Not on a
    reconnect, whose connect may wait out a stalled container (the scan stays as fresh as
    before). :meth:`discard` when the first pass does not take them (the connect failed)."""

    def __init__(self, local: Any, store: StateStore | None) -> None:
        self.scan: asyncio.Future[Snapshot] | None = None
        self.saved: asyncio.Future[Saved | StateError | None] | None = None
        if store is not None:
            self.scan = asyncio.ensure_future(local.scan())
            self.saved = asyncio.ensure_future(asyncio.to_thread(_load, store))

    def discard(self) -> None:
        for future in (self.scan, self.saved):
            if future is None:
                continue
            if future.done():
                if not future.cancelled():
                    future.exception()  # retrieved: a failure here is reported elsewhere
            else:
                future.cancel()


def _load(store: StateStore) -> Saved | StateError | None:
    try:
        return store.load()
    except StateError as exc:
        return exc


class FirstPass:
    """Initial sync or resume (mixed into Session)."""

    spec: SyncSpec
    options: RunOptions
    rules: Rules
    log: SyncLog
    console: Console
    store: StateStore
    ancestor: Ancestor
    L: Snapshot
    R: Snapshot
    initial_done: asyncio.Event
    _fsid: str | None
    _local_id: tuple[int, int] | None
    #: A saved state that was not taken (other folders): still the best record of what the
    #: local folder held, for the halt check.
    _unused_state: Ancestor
    on_upload: OnUpload

    if TYPE_CHECKING:  # provided by Session

        def say(self, message: str, level: str = "INFO", console: bool = True) -> None: ...

        def state(self, state: str, message: str | None = None, **extra: Any) -> None: ...

        async def _save_soon(self) -> None: ...

        def _halt_hint(self) -> str: ...

        async def _execute(
            self, plan: Plan, local: Any, remote: Any, phase: str, progress: bool = False
        ) -> None: ...

    def _early(self, local: Any) -> Early:
        """Start the first pass's local work (call before the connect)."""
        restart = not self.initial_done.is_set()
        return Early(local, self.store if restart else None)

    async def _first_pass(self, local: Any, remote: Any, early: Early) -> None:
        """The spec's initial sync, or a resume (from the state saved by an earlier run, or
        from the last agreed state of this process after a reconnect)."""
        started = time.monotonic()
        before = (self.L, self.R)
        self.L, self.R = await asyncio.gather(early.scan or local.scan(), remote.scan())
        scanned = time.monotonic()
        restart = not self.initial_done.is_set()
        saved = await early.saved if early.saved is not None else None
        self._identify(getattr(remote, "fsid", None), restart, saved)
        if restart and self.ancestor and remote.mtime_granularity_ns >= 10**9:
            adopt_finer_mtimes(self.ancestor, self.R)  # a state of the whole-second shell agent
        self._keep_unknown(local, remote, before)
        phase, plan = await self._decide(local, remote, restart)
        if self.options.dry_run:
            self.console.output(f"[{self.spec.name}] {phase} plan: {plan.summary()}")
            for line in plan.describe():
                self.console.output(f"  {line}")
            self.initial_done.set()
            return
        planned = time.monotonic()
        self.log.write(
            self.spec.name,
            "INFO",
            f"{phase}: compared {len(self.L)} local and {len(self.R)} {self.spec.target.noun}"
            f" entries: scans {(scanned - started) * 1000:.0f} ms, plan"
            f" {(planned - scanned) * 1000:.0f} ms; {plan.summary()}",
        )
        if restart and not plan.changes():
            self.say(
                f"{phase}: already in sync ({len(self.L)} entries compared in"
                f" {(planned - started) * 1000:.0f} ms)"
            )
        if restart:  # a resume applies what changed while stopped: say so, not "initial sync"
            self.state("initial sync" if phase == "initial sync" else "resuming", progress=0.0)
        await self._execute(plan, local, remote, phase, progress=restart)
        self.log.write(
            self.spec.name,
            "INFO",
            f"{phase}: done in {(time.monotonic() - started) * 1000:.0f} ms"
            f" (transfers {(time.monotonic() - planned) * 1000:.0f} ms)",
        )
        self.initial_done.set()
        if not (
            isinstance(saved, Saved)
            and (saved.fsid, saved.local_id) == (self._fsid, self._local_id)
            and self.ancestor == saved.ancestor
        ):
            await self._save_soon()  # (a no-op resume leaves the file as it is: ~15 ms at 10k)
        self.state("watching" if self.options.watch else "stopped", progress=None)
        self.on_upload.release()  # commands wait for the first pass, then run once

    def _identify(self, fsid: str | None, restart: bool, saved: Saved | StateError | None) -> None:
        """Which two folders the ancestor may describe: take a saved state (as loaded) on a
        restart; drop the ancestor when the far side turns out to be another filesystem."""
        local_id = local_identity(self.spec.local_root)
        if restart and not self.options.reset_state:  # (a dry run keeps the file)
            self._adopt_saved(fsid, local_id, saved)
        elif fsid is not None and self._fsid is not None and fsid != self._fsid:
            noun = self.spec.target.noun
            self.say(
                f"the {noun} is a new one (another filesystem): initial sync with local authority"
            )
            self.ancestor.clear()
        self._fsid, self._local_id = fsid, local_id

    async def _decide(self, local: Any, remote: Any, restart: bool) -> tuple[str, Plan]:
        """The phase name and its plan: a resume or resync from the ancestor, else the spec's
        initial sync; halts when the local side looks emptied (against the ancestor, or
        against a saved state that was not taken: an emptied folder must not empty the
        container across a restart either)."""
        granularity = max(local.mtime_granularity_ns, remote.mtime_granularity_ns)
        noun = self.spec.target.noun
        if self.ancestor and detect_mass_deletion(self.ancestor, self.R, self.rules, far=noun):
            self.say(f"the {noun} side looks new or emptied: initial sync with local authority")
            self.ancestor.clear()
        for known in (self.ancestor, self._unused_state):
            if known:
                problem = detect_mass_deletion(known, self.L, self.rules, side="local", far=noun)
                if problem:
                    raise SafetyHalt(problem + self._halt_hint())
        if not self.ancestor:
            return "initial sync", await self._planned(local, remote, granularity, resume=False)
        if restart:
            return "resume", await self._planned(local, remote, granularity, resume=True)
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
        return "resync", plan

    def _keep_unknown(self, local: Any, remote: Any, before: tuple[Snapshot, Snapshot]) -> None:
        """What a scan could not read is unknown, not gone: keep what was known there (this
        process's previous scan, else the last agreed state, e.g. saved by an earlier run)."""
        for fresh, endpoint, previous, is_local in (
            (self.L, local, before[0], True),
            (self.R, remote, before[1], False),
        ):
            unknown = getattr(endpoint, "unreadable", ())
            if unknown:
                known = previous or {
                    path: entry
                    for path, record in self.ancestor.items()
                    if (entry := record.local if is_local else record.remote) is not None
                }
                keep_unknown(fresh, known, unknown)

    def _adopt_saved(
        self, fsid: str | None, local_id: tuple[int, int] | None, saved: Saved | StateError | None
    ) -> None:
        """Take the state an earlier run saved, when it describes these two folders."""
        if isinstance(saved, StateError):
            self.say(f"warning: ignoring the saved sync state: {saved}", "WARN")
            return
        if saved is None or not saved.ancestor:
            return
        noun = self.spec.target.noun
        if saved.local_id != local_id:
            why = "the local folder is not the one it describes (recreated?)"
        elif fsid is None:
            why = f"the {noun}'s filesystem cannot be identified"
        elif saved.fsid != fsid:
            why = f"the {noun} is a new one (another filesystem)"
        else:
            self.ancestor.clear()
            self.ancestor.update(saved.ancestor)
            self.log.write(
                self.spec.name,
                "INFO",
                f"resuming from the state saved by an earlier run ({len(saved.ancestor)} records)",
            )
            return
        self._unused_state = saved.ancestor
        self.say(f"not resuming from the saved state: {why}; initial sync with local authority")

    async def _planned(self, local: Any, remote: Any, granularity: int, *, resume: bool) -> Plan:
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

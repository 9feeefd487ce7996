"""``--all-replicas``: keep every pod a Kubernetes selection matches in sync, one of them both
ways.

Owns: :class:`ReplicaSupervisor`, which runs beside one primary :class:`Session` (the usual
two-way sync, unchanged: its own selection picks the newest Ready pod and moves on when that
pod goes away) and keeps one upload-only session (``upload_only``, the spec's rules) per
other usable pod. May import: everything in ``podsync.engine``, ``podsync.transport``.

Every REPLICA_POLL_SECONDS it lists the pods once, by the entry's own selector (one API
request), asks the pure :func:`~podsync.transport.k8s_replicas.plan_replicas` for the roles,
and starts or stops sessions to match: a new pod (scale-up, rollout) gets the initial sync
(upload direction only) and then every local change; a pod that goes away is dropped with
one info line; when the primary sync moves to a pod that was a replica, that replica's
session stops. Downloads come only from the primary, so replicas never fight. A replica
whose connection drops is re-listed at once instead of printing a warning: a pod that is
gone is the usual case (scale-down), not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

from podsync.engine.connect import _last_built_tag
from podsync.engine.report import Console, StatusBoard, SyncLog
from podsync.engine.session import Session
from podsync.engine.spec import RunOptions, SyncSpec
from podsync.errors import PodsyncError, SafetyHalt
from podsync.limits import SHUTDOWN_SECONDS
from podsync.transport.k8s_replicas import ReplicaPlan, plan_replicas

#: One pod listing per this many seconds (sooner when a replica's connection drops).
REPLICA_POLL_SECONDS = 3.0
#: A replica session that failed before it was watching is started again after this long.
RESTART_SECONDS = 5.0


def replica_spec(spec: SyncSpec, pod: str, container: str) -> SyncSpec:
    """The upload-only spec for one replica: ``spec`` pinned to ``pod``/``container``."""
    target = dataclasses.replace(
        spec.target,
        pod=pod,
        container=container,
        label_selector=None,
        image_name=None,
        image_ref=None,
        pick=False,
    )
    return dataclasses.replace(
        spec,
        name=f"{spec.name}@{pod}",
        target=target,
        upload_only=True,
        download_only=False,
        wait_initial_sync=False,
    )


class ReplicaSession(Session):
    """A session to one replica. A lost connection is not shown as a warning: the supervisor
    re-lists at once and either drops the pod (gone) or lets the session reconnect."""

    def __init__(self, *args: Any, on_lost: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_lost = on_lost

    def say(self, message: str, level: str = "INFO", console: bool = True) -> None:
        if message.startswith("connection lost"):
            console = False
            self._on_lost()
        super().say(message, level, console)


@dataclasses.dataclass
class _Replica:
    session: ReplicaSession
    task: asyncio.Task[None]
    container: str


class ReplicaSupervisor:
    """Upload-only sessions for every usable pod but the primary session's."""

    def __init__(
        self,
        primary: Session,
        primary_task: asyncio.Task[None],
        console: Console,
        log: SyncLog,
        board: StatusBoard,
    ) -> None:
        self.primary = primary
        self.primary_task = primary_task
        self.spec = primary.spec
        self.options: RunOptions = primary.options
        self.console = console
        self.log = log
        self.board = board
        self.replicas: dict[str, _Replica] = {}
        self._primary_pod: str | None = None
        self._halted: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._poke = asyncio.Event()
        self._api: Any = None
        self._sel: Any = None
        self._listing_failed = False

    # -- reporting ----------------------------------------------------------------------
    def say(self, message: str, level: str = "INFO") -> None:
        self.log.write(self.spec.name, level, message)
        self.console.line(f"[{self.spec.name}] {message}")

    def _connected_pod(self) -> str | None:
        """The pod the primary session's current (or last) connection goes to."""
        target = getattr(self.primary.transport, "target", None)
        pod = getattr(target, "pod", None)
        return pod if isinstance(pod, str) else None

    # -- the pods ---------------------------------------------------------------------
    async def _list(self) -> list[Any]:
        from podsync.transport.k8s_select import list_candidates
        from podsync.transport.k8s_target import list_pods, selector_for
        from podsync.transport.kubeconfig import load_api_access

        target = self.spec.target
        if self._api is None:
            self._api = await asyncio.to_thread(
                load_api_access, target.kube_context, target.namespace
            )
            self._sel = selector_for(target, self._api.namespace, _last_built_tag(self.spec))
        return list_candidates(await list_pods(self._api, self._sel), self._sel)

    async def _plan(self) -> ReplicaPlan | None:
        """The roles now; None (logged once per failure streak) when the listing fails."""
        try:
            plan = plan_replicas(await self._list(), self._connected_pod())
        except PodsyncError as exc:
            if not self._listing_failed:
                self.log.write(self.spec.name, "WARN", f"listing replicas failed: {exc}")
            self._listing_failed = True
            return None
        self._listing_failed = False
        return plan

    # -- sessions -----------------------------------------------------------------------
    def _start(self, pod: str, container: str) -> None:
        session = ReplicaSession(
            replica_spec(self.spec, pod, container),
            self.options,
            self.console,
            self.log,
            self.board,
            on_lost=self._poke.set,
        )
        self.board.update(session.spec.name, force=True, role="replica")
        task = asyncio.create_task(session.run(), name=session.spec.name)
        task.add_done_callback(lambda _t: self._poke.set())
        self.replicas[pod] = _Replica(session, task, container)

    async def _stop(self, pod: str, why: str) -> None:
        replica = self.replicas.pop(pod)  # at once: gathered stops must not see it again
        replica.task.cancel()
        await asyncio.wait([replica.task], timeout=SHUTDOWN_SECONDS)
        if replica.task.done() and not replica.task.cancelled():
            replica.task.exception()  # reported already, or irrelevant now the pod is gone
        self.board.rows.pop(replica.session.spec.name, None)
        self.board.flush()
        self._retry_at.pop(pod, None)
        self.say(why)

    def _reap(self, pod: str, replica: _Replica) -> None:
        """A replica session ended by itself: halted (kept, never restarted) or failed
        (started again after RESTART_SECONDS while the pod is still there)."""
        exc = None if replica.task.cancelled() else replica.task.exception()
        if isinstance(exc, SafetyHalt):
            self._halted.add(pod)
            return
        del self.replicas[pod]  # its row stays (showing the error) until it starts again
        if exc is not None:
            self.log.write(self.spec.name, "WARN", f"replica {pod}: {exc}")
            self._retry_at[pod] = time.monotonic() + RESTART_SECONDS

    async def _apply(self, plan: ReplicaPlan) -> None:
        connected = self._connected_pod()
        if connected is not None and connected != self._primary_pod:
            if self._primary_pod is not None:  # said once the primary sync is there
                self.say(f"primary is now pod {connected} (the newest Ready pod)")
            self._primary_pod = connected
        if self.primary.spec.name in self.board.rows:
            self.board.update(self.primary.spec.name, role="primary")
        stops = []
        for pod, replica in list(self.replicas.items()):
            if pod == plan.primary:
                why = f"pod {pod} is the primary now; its upload-only sync ends"
                stops.append(self._stop(pod, why))
            elif pod not in plan.replicas:
                stops.append(self._stop(pod, f"replica {pod} is gone (or not Ready); dropped"))
            elif replica.task.done() and pod not in self._halted:
                self._reap(pod, replica)
        await asyncio.gather(*stops)  # a scale-down by N waits for them together
        self._halted &= set(self.replicas)
        for pod in [p for p in self._retry_at if p not in plan.replicas]:
            del self._retry_at[pod]
            self.board.rows.pop(f"{self.spec.name}@{pod}", None)
            self.board.flush()
            self.say(f"replica {pod} is gone; dropped")
        now = time.monotonic()
        for pod, container in plan.replicas.items():
            if pod not in self.replicas and self._retry_at.get(pod, 0.0) <= now:
                self._retry_at.pop(pod, None)
                self._start(pod, container)

    # -- life cycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled (watch), or until every replica's initial sync ended (--no-watch,
        --dry-run: a failed replica is then an error of this task)."""
        try:
            connected = asyncio.ensure_future(self.primary.connected.wait())
            try:
                await asyncio.wait(
                    [connected, self.primary_task], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                connected.cancel()
            if not self.primary.connected.is_set():
                return  # the primary failed before connecting: the runner reports it
            if self.options.watch and not self.options.dry_run:
                await self._supervise()
            else:
                await self._once()
        finally:
            await self._stop_all()

    async def _supervise(self) -> None:
        while True:
            self._poke.clear()
            plan = await self._plan()
            if plan is not None:
                await self._apply(plan)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poke.wait(), REPLICA_POLL_SECONDS)

    async def _once(self) -> None:
        plan = plan_replicas(await self._list(), self._connected_pod())
        await self._apply(plan)
        tasks = [r.task for r in self.replicas.values()]
        if not tasks:
            return
        await asyncio.wait(tasks)
        failed = [
            f"replica {pod}: {r.task.exception()}"
            for pod, r in self.replicas.items()
            if not r.task.cancelled() and r.task.exception() is not None
        ]
        if failed:
            raise PodsyncError("; ".join(failed))

    async def _stop_all(self) -> None:
        """Cancel every replica session; their rows say "stopped" at once (the runner writes
        the status file after a bounded wait, which may end before these tasks do)."""
        for replica in self.replicas.values():
            replica.task.cancel()
            row = self.board.rows.get(replica.session.spec.name)
            if row is not None and row.state not in ("halted", "error"):
                self.board.update(row.name, state="stopped")
        tasks = [r.task for r in self.replicas.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS)
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()

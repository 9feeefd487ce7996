"""Pod objects, their status, resource versions and watch events of the emulator.

Owns: the in-memory pod store (one per emulator), the status a kubelet would report for each
pod (phase, conditions, containerStatuses), the event history watches replay, and Table
rendering for ``kubectl get``. May import: stdlib and ``k8s_emulator.docker``.

Everything here runs on the emulator's event loop; the store is not thread-safe.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

#: Test-only annotation that makes a new pod stay in a given state instead of starting:
#: ``Pending`` (unschedulable), ``ContainerCreating``, ``ImagePullBackOff``, ``CrashLoopBackOff``.
STATE_ANNOTATION = "emulator.podsync.test/state"

HISTORY = 2000


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerState:
    name: str
    image: str
    docker_name: str
    running: bool = False
    waiting_reason: str | None = "ContainerCreating"
    restart_count: int = 0
    started_at: str | None = None
    image_id: str = ""
    #: (reason, exit code) while a dead container waits to be restarted.
    terminated: tuple[str, int] | None = None


@dataclass
class Pod:
    manifest: Obj
    containers: list[ContainerState]
    phase: str = "Pending"
    unschedulable: bool = False
    deleting: bool = False
    created_mono: float = field(default=0.0)

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.manifest["metadata"]["namespace"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.manifest["metadata"].get("labels") or {})

    def container(self, name: str) -> ContainerState | None:
        return next((c for c in self.containers if c.name == name), None)

    def ready(self) -> bool:
        return self.phase == "Running" and all(
            c.running and not c.waiting_reason for c in self.containers
        )


def _condition(kind: str, ok: bool, reason: str | None = None) -> Obj:
    cond: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}
    cond["lastTransitionTime"] = now_iso()
    if reason:
        cond["reason"] = reason
    return cond


def _container_status(c: ContainerState) -> Obj:
    state: Obj
    if c.running and not c.waiting_reason:
        state = {"running": {"startedAt": c.started_at}}
    elif c.terminated is not None:
        reason, code = c.terminated
        state = {"terminated": {"reason": reason, "exitCode": code, "finishedAt": now_iso()}}
    else:
        state = {"waiting": {"reason": c.waiting_reason or "ContainerCreating"}}
        if c.waiting_reason == "CrashLoopBackOff":
            state["waiting"]["message"] = f"back-off 5m0s restarting failed container={c.name}"
    ready = c.running and not c.waiting_reason
    return {
        "name": c.name,
        "image": c.image,
        "imageID": c.image_id,
        "containerID": f"docker://{c.docker_name}" if c.running else "",
        "ready": ready,
        "started": ready,
        "restartCount": c.restart_count,
        "state": state,
    }


def render(pod: Pod, resource_version: int) -> Obj:
    """The pod as the API returns it (a fresh deep copy)."""
    obj = copy.deepcopy(pod.manifest)
    obj["metadata"]["resourceVersion"] = str(resource_version)
    if pod.deleting:
        obj["metadata"]["deletionTimestamp"] = now_iso()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
    ready = pod.ready()
    conds = [_condition("PodScheduled", not pod.unschedulable, "Unschedulable" * pod.unschedulable)]
    if not pod.unschedulable:
        conds += [
            _condition("Initialized", True),
            _condition("ContainersReady", ready, None if ready else "ContainersNotReady"),
            _condition("Ready", ready, None if ready else "ContainersNotReady"),
        ]
    status: Obj = {"phase": pod.phase, "conditions": conds, "qosClass": "BestEffort"}
    if not pod.unschedulable:
        status["hostIP"] = "127.0.0.1"
        status["startTime"] = obj["metadata"]["creationTimestamp"]
        status["containerStatuses"] = [_container_status(c) for c in pod.containers]
    else:
        conds[0]["message"] = "0/1 nodes are available: emulator holds this pod Pending."
    obj["status"] = status
    return obj


def new_manifest(body: Obj, namespace: str) -> Obj:
    """Normalise a POSTed pod: defaults the API server would fill in."""
    obj = copy.deepcopy(body)
    obj["kind"], obj["apiVersion"] = "Pod", "v1"
    meta = obj.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
    meta["namespace"] = namespace
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_iso()
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("nodeName", "emulator")
    for c in spec.get("containers") or []:
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
    obj.pop("status", None)
    return obj


class WatchEvent:
    __slots__ = ("obj", "rv", "type")

    def __init__(self, rv: int, kind: str, obj: Obj) -> None:
        self.rv, self.type, self.obj = rv, kind, obj


class PodStore:
    """All pods, a resource-version counter, an event history and live watchers."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], Pod] = {}
        self.rv = 1
        self.history: list[WatchEvent] = []
        self.watchers: set[asyncio.Queue[WatchEvent]] = set()

    def get(self, namespace: str, name: str) -> Pod | None:
        return self.pods.get((namespace, name))

    def emit(self, kind: str, pod: Pod) -> Obj:
        """Bump the resource version, record and broadcast one event; returns the object."""
        self.rv += 1
        obj = render(pod, self.rv)
        ev = WatchEvent(self.rv, kind, obj)
        self.history.append(ev)
        del self.history[:-HISTORY]
        for q in self.watchers:
            q.put_nowait(ev)
        return obj

    def add(self, pod: Pod) -> Obj:
        self.pods[(pod.namespace, pod.name)] = pod
        return self.emit("ADDED", pod)

    def remove(self, pod: Pod) -> None:
        self.pods.pop((pod.namespace, pod.name), None)
        self.emit("DELETED", pod)

    def since(self, rv: int) -> list[WatchEvent] | None:
        """Events after ``rv``; None when the history no longer reaches back that far."""
        if self.history and rv < self.history[0].rv - 1:
            return None
        return [e for e in self.history if e.rv > rv]


def _age(created: str) -> str:
    then = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    secs = max(0, int((dt.datetime.now(dt.UTC) - then).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    return f"{secs // 3600}h"


def _status_column(obj: Obj) -> str:
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for cs in obj["status"].get("containerStatuses", []):
        waiting = cs["state"].get("waiting")
        if waiting:
            return str(waiting["reason"])
    return str(obj["status"]["phase"])


_COLUMNS = [
    ("Name", "string", "name", 0),
    ("Ready", "string", "", 0),
    ("Status", "string", "", 0),
    ("Restarts", "string", "", 0),
    ("Age", "string", "", 0),
    ("IP", "string", "", 1),
    ("Node", "string", "", 1),
]


def table(objs: list[Obj], resource_version: int, include: str) -> Obj:
    """A ``meta.k8s.io/v1`` Table of pods, as ``kubectl get`` asks for."""
    rows = []
    for o in objs:
        statuses = o["status"].get("containerStatuses", [])
        ready = sum(1 for s in statuses if s["ready"])
        total = len(o["spec"].get("containers") or [])
        restarts = sum(int(s["restartCount"]) for s in statuses)
        cells = [o["metadata"]["name"], f"{ready}/{total}", _status_column(o), str(restarts)]
        cells += [_age(o["metadata"]["creationTimestamp"]), "<none>", o["spec"]["nodeName"]]
        row: Obj = {"cells": cells}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": n, "priority": p}
            for n, t, f, p in _COLUMNS
        ],
        "rows": rows,
    }

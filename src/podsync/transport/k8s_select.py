"""Which pod and container to sync with, exactly as the spec's "Container Selection" says.

Owns: the pod/container value types, their parsing from API JSON, image-reference matching,
and the pure choice :func:`select_target` (plus :func:`list_candidates` for a picker). Does no
I/O. May import: the standard library and ``podsync.errors``.

Rules (spec, ``dev.sync[*]``): ``labelSelector`` (+ ``containerName``, required when the pod
has several containers) or ``imageName`` (the image of ``images[imageName]`` matched against
the pod containers' images ignoring tag and digest; the tag last built, when known, is
preferred; several matching containers in one pod, or in pods of different workloads, is an
error naming them); ``namespace``. Among matching pods the newest Running and Ready one wins.
When none is usable the result is :class:`Waiting` with the pod's own reason (Pending,
ContainerCreating, ImagePullBackOff, CrashLoopBackOff, ...), so callers can show what they
wait for and give up with that reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podsync.errors import TargetError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    #: The image string of the pod spec (as deployed, e.g. ``john/devbackend:abc``).
    image: str
    ready: bool = False
    #: ``state.waiting.reason`` (ContainerCreating, ImagePullBackOff, CrashLoopBackOff, ...).
    waiting_reason: str | None = None


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    phase: str = "Pending"
    #: The pod's Ready condition.
    ready: bool = False
    created: dt.datetime = _EPOCH
    containers: tuple[ContainerInfo, ...] = ()
    #: Set while the pod is terminating (``metadata.deletionTimestamp``).
    deleting: bool = False
    #: Pod-level reason: ``status.reason`` or the PodScheduled condition's (Unschedulable).
    reason: str | None = None
    #: The workload the pod belongs to (e.g. ``Deployment/app-backend``); None: a bare pod.
    owner: str | None = None

    def container(self, name: str) -> ContainerInfo | None:
        return next((c for c in self.containers if c.name == name), None)


@dataclass(frozen=True)
class Selector:
    """One ``dev.sync`` entry's selection options (exactly one of pod/labels/image_ref)."""

    namespace: str
    pod: str | None = None
    label_selector: Mapping[str, str] | None = None
    #: ``images[imageName].image`` and the imageName itself (for messages).
    image_ref: str | None = None
    image_name: str | None = None
    container: str | None = None
    #: Tag last built for that image (``.devspace/generated.yaml``), preferred when present.
    last_built_tag: str | None = None
    #: Only pods of this workload (e.g. ``Deployment/web``): a picked pod's replacement.
    owner: str | None = None

    def describe(self) -> str:
        if self.pod:
            what = f"pod {self.pod}"
        elif self.label_selector:
            what = "pods with labels " + ",".join(
                f"{k}={v}" for k, v in sorted(self.label_selector.items())
            )
        elif self.image_ref:
            what = f"pods running image {self.image_ref} (imageName {self.image_name})"
        else:
            what = "pods"
        if self.owner:
            what += f" of {self.owner}"
        return f"{what} in namespace {self.namespace}"


@dataclass(frozen=True)
class Target:
    """The container to sync with."""

    namespace: str
    pod: str
    container: str
    image: str


@dataclass(frozen=True)
class Waiting:
    """Nothing usable yet; ``reason`` is the pod's own (or ``NoPod``)."""

    reason: str
    message: str
    pod: str | None = None
    container: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One selectable (pod, container), for a picker or an error listing."""

    pod: PodInfo
    container: ContainerInfo

    @property
    def usable(self) -> bool:
        return _usable(self.pod, self.container)

    def describe(self) -> str:
        state = "Ready" if self.usable else _reason(self.pod, self.container)
        return f"{self.pod.name}:{self.container.name} ({self.container.image}, {state})"


# -- image references ---------------------------------------------------------------------
def split_image(ref: str) -> tuple[str, str | None]:
    """(normalised repository, tag or None): tag and digest stripped, ``docker.io/library/``
    made explicit so ``busybox``, ``library/busybox`` and ``docker.io/library/busybox`` agree."""
    ref = ref.strip().split("@", 1)[0]
    tag = None
    head, sep, tail = ref.rpartition(":")
    if sep and "/" not in tail:
        ref, tag = head, tail
    parts = ref.split("/")
    if len(parts) == 1 or not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = ["docker.io", *parts]
    if parts[0] in ("index.docker.io", "registry-1.docker.io"):
        parts[0] = "docker.io"
    if parts[0] == "docker.io" and len(parts) == 2:
        parts = ["docker.io", "library", parts[1]]
    return "/".join(parts).lower(), tag


def same_image(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name the same repository (tags and digests ignored)."""
    return split_image(a)[0] == split_image(b)[0]


def last_built_tags(generated: Mapping[str, Any]) -> dict[str, str]:
    """Tags recorded in a ``.devspace/generated.yaml`` mapping, keyed by image config name
    and by image repository (best effort over DevSpace v4's ``profiles.*.images`` layout)."""
    tags: dict[str, str] = {}
    profiles = generated.get("profiles") or {}
    sections = [generated, *(p for p in profiles.values() if isinstance(p, Mapping))]
    for section in sections:
        images = section.get("images") or {}
        if not isinstance(images, Mapping):
            continue
        for key, entry in images.items():
            if isinstance(entry, Mapping) and entry.get("tag"):
                tags[str(key)] = str(entry["tag"])
                if entry.get("imageName"):
                    tags[str(entry["imageName"])] = str(entry["tag"])
    return tags


# -- API JSON -> values -------------------------------------------------------------------
def _timestamp(text: str | None) -> dt.datetime:
    if not text:
        return _EPOCH
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return _EPOCH


def _owner(meta: Mapping[str, Any], labels: Mapping[str, str]) -> str | None:
    refs = meta.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if not ref:
        return None
    kind, name = str(ref.get("kind")), str(ref.get("name"))
    pth = labels.get("pod-template-hash")
    if kind == "ReplicaSet" and pth and name.endswith("-" + pth):
        return "Deployment/" + name[: -len(pth) - 1]
    return f"{kind}/{name}"


def pod_info(obj: Mapping[str, Any]) -> PodInfo:
    """A :class:`PodInfo` from a pod as the API returns it (camelCase JSON)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    containers = []
    for c in spec.get("containers") or []:
        st = statuses.get(c.get("name")) or {}
        waiting = (st.get("state") or {}).get("waiting") or {}
        containers.append(
            ContainerInfo(
                name=str(c.get("name")),
                image=str(c.get("image") or st.get("image") or ""),
                ready=bool(st.get("ready")),
                waiting_reason=waiting.get("reason"),
            )
        )
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conds.get("PodScheduled") or {}
    reason = status.get("reason") or (
        sched.get("reason") if sched.get("status") == "False" else None
    )
    return PodInfo(
        name=str(meta.get("name")),
        namespace=str(meta.get("namespace") or ""),
        labels=labels,
        phase=str(status.get("phase") or "Pending"),
        ready=(conds.get("Ready") or {}).get("status") == "True",
        created=_timestamp(meta.get("creationTimestamp")),
        containers=tuple(containers),
        deleting=bool(meta.get("deletionTimestamp")),
        reason=reason,
        owner=_owner(meta, labels),
    )


# -- selection ----------------------------------------------------------------------------
def _usable(pod: PodInfo, container: ContainerInfo) -> bool:
    return pod.phase == "Running" and not pod.deleting and container.ready


def _reason(pod: PodInfo, container: ContainerInfo | None) -> str:
    if pod.deleting:
        return "Terminating"
    if container is not None and container.waiting_reason:
        return container.waiting_reason
    if pod.phase in ("Succeeded", "Failed"):
        return "Completed" if pod.phase == "Succeeded" else "Failed"
    if pod.phase == "Pending":
        return "Pending"
    return pod.reason or "NotReady"


def _matches_labels(pod: PodInfo, labels: Mapping[str, str]) -> bool:
    return all(pod.labels.get(k) == v for k, v in labels.items())


def _names(cs: Sequence[ContainerInfo]) -> str:
    return ", ".join(c.name for c in cs)


def _container_of(pod: PodInfo, sel: Selector) -> ContainerInfo | None:
    """The container of ``pod`` the selector means (None: the pod does not match)."""
    if sel.image_ref is not None:
        repo = split_image(sel.image_ref)[0]
        hits = [c for c in pod.containers if split_image(c.image)[0] == repo]
        if sel.container is not None:
            hits = [c for c in hits if c.name == sel.container]
        if len(hits) > 1:
            raise TargetError(
                f"imageName {sel.image_name or sel.image_ref}: several containers of pod "
                f"{pod.name} run {sel.image_ref} ({_names(hits)}); use labelSelector and "
                "containerName instead"
            )
        return hits[0] if hits else None
    if sel.container is not None:
        found = pod.container(sel.container)
        if found is None:
            raise TargetError(
                f"container {sel.container} not found in pod {pod.name} "
                f"(containers: {_names(pod.containers)})"
            )
        return found
    if len(pod.containers) != 1:
        raise TargetError(
            f"pod {pod.name} has {len(pod.containers)} containers ({_names(pod.containers)}): "
            "choose one with --container (containerName in devspace.yaml), or --pick"
        )
    return pod.containers[0]


def _pod_matches(pod: PodInfo, sel: Selector) -> bool:
    if pod.namespace and pod.namespace != sel.namespace:
        return False
    if sel.pod is not None and pod.name != sel.pod:
        return False
    if sel.owner is not None and pod.owner != sel.owner:
        return False
    return sel.label_selector is None or _matches_labels(pod, sel.label_selector)


def _best_first(found: list[Candidate], sel: Selector) -> list[Candidate]:
    if sel.image_ref is not None and sel.last_built_tag:
        latest = [c for c in found if split_image(c.container.image)[1] == sel.last_built_tag]
        found = latest or found
    found.sort(key=lambda c: (c.usable, c.pod.ready, c.pod.created, c.pod.name), reverse=True)
    return found


def list_candidates(pods: Sequence[PodInfo], sel: Selector) -> list[Candidate]:
    """Every matching (pod, container), best first: usable, then Ready pods, then newest.

    Raises TargetError for selections no waiting can fix (several containers and no
    containerName, unknown containerName, several containers running the image)."""
    found = []
    for pod in pods:
        if not _pod_matches(pod, sel):
            continue
        container = _container_of(pod, sel)
        if container is not None:
            found.append(Candidate(pod, container))
    return _best_first(found, sel)


def pick_candidates(pods: Sequence[PodInfo], sel: Selector) -> list[Candidate]:
    """What ``--pick`` offers: every container of every pod the selector matches (every pod of
    the namespace when it names none), narrowed to ``sel.container`` when set and, for an
    image, to the containers running it; terminating pods left out; best first. Never
    raises: several containers are what a picker is for."""
    repo = split_image(sel.image_ref)[0] if sel.image_ref is not None else None
    found = [
        Candidate(pod, c)
        for pod in pods
        if _pod_matches(pod, sel) and not pod.deleting
        for c in pod.containers
        if (sel.container is None or c.name == sel.container)
        and (repo is None or split_image(c.image)[0] == repo)
    ]
    return _best_first(found, sel)


def select_target(pods: Sequence[PodInfo], sel: Selector) -> Target | Waiting:
    """The newest Running and Ready matching container, or what the best match waits for."""
    candidates = list_candidates(pods, sel)
    if sel.image_ref is not None:
        owners = sorted(
            {c.pod.owner or f"Pod/{c.pod.name}" for c in candidates if not c.pod.deleting}
        )
        if len(owners) > 1:
            raise TargetError(
                f"imageName {sel.image_name or sel.image_ref}: image {sel.image_ref} is used by "
                f"several workloads ({', '.join(owners)}); use labelSelector instead"
            )
    if not candidates:
        return Waiting("NoPod", f"no pod matches: {sel.describe()}")
    best = candidates[0]
    if best.usable:
        return Target(sel.namespace, best.pod.name, best.container.name, best.container.image)
    reason = _reason(best.pod, best.container)
    return Waiting(
        reason,
        f"pod {best.pod.name} (container {best.container.name}) is not ready: {reason}",
        pod=best.pod.name,
        container=best.container.name,
    )


def describe_candidates(candidates: Sequence[Candidate]) -> str:
    """One line listing candidates, for errors when no picker can be shown."""
    return "; ".join(c.describe() for c in candidates)


_LABEL_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")


def label_selector_query(labels: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` for the API's labelSelector parameter (validated)."""
    for key, value in labels.items():
        if not _LABEL_RE.match(key) or (value and not _LABEL_RE.match(value)):
            raise TargetError(f"invalid label selector {key}={value}")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

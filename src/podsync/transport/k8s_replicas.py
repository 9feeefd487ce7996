"""Which pods of a selection get which role with ``--all-replicas``: the pure choice.

Owns: :class:`ReplicaPlan` and :func:`plan_replicas`. Does no I/O. May import: the standard
library and ``podsync.transport.k8s_select``.

Rules: only usable pods count (Running, Ready, not terminating). The primary (the one pod
that is synced both ways) stays the pod the primary sync is connected to while that pod is
usable, so a scale-up never moves it; when it is not (gone, terminating, not Ready, or no
connection yet) the newest usable pod is the primary, which is the pod the primary sync's
own selection picks when it (re)connects. Every other usable pod is an upload-only replica.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from podsync.transport.k8s_select import Candidate


@dataclass(frozen=True)
class ReplicaPlan:
    """The primary pod (None: no usable pod) and the replicas, pod name -> container name."""

    primary: str | None
    replicas: Mapping[str, str] = field(default_factory=dict)


def newest_first(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The usable candidates in the selection's order: Ready pods, then the newest, the name
    breaking ties (``k8s_select._best_first``)."""
    usable = [c for c in candidates if c.usable]
    return sorted(usable, key=lambda c: (c.pod.ready, c.pod.created, c.pod.name), reverse=True)


def plan_replicas(candidates: Sequence[Candidate], current: str | None) -> ReplicaPlan:
    """Roles for ``candidates`` (one per pod, from ``list_candidates``) when the primary sync
    is connected to pod ``current`` (None: not connected)."""
    usable = newest_first(candidates)
    names = [c.pod.name for c in usable]
    if current in names:
        primary: str | None = current
    else:
        primary = names[0] if names else None
    replicas = {c.pod.name: c.container.name for c in usable if c.pod.name != primary}
    return ReplicaPlan(primary, dict(sorted(replicas.items())))

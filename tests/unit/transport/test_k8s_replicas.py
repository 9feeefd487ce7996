"""--all-replicas roles (transport.k8s_replicas.plan_replicas): which pod is the primary,
which are upload-only replicas, as the pods come and go."""

from __future__ import annotations

import datetime as dt

from podsync.transport.k8s_replicas import ReplicaPlan, plan_replicas
from podsync.transport.k8s_select import Candidate, ContainerInfo, PodInfo

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def cand(
    name: str,
    minute: int,
    ready: bool = True,
    deleting: bool = False,
    phase: str = "Running",
    container: str = "main",
) -> Candidate:
    box = ContainerInfo(container, "img", ready=ready)
    pod = PodInfo(
        name,
        "ns",
        phase=phase,
        ready=ready,
        created=T0 + dt.timedelta(minutes=minute),
        containers=(box,),
        deleting=deleting,
    )
    return Candidate(pod, box)


def test_newest_ready_pod_is_primary_when_none_is_connected() -> None:
    pods = [cand("a", 1), cand("b", 3), cand("c", 2)]
    assert plan_replicas(pods, None) == ReplicaPlan("b", {"a": "main", "c": "main"})


def test_connected_primary_stays_when_a_newer_pod_appears() -> None:
    pods = [cand("a", 1), cand("b", 3), cand("new", 9)]
    assert plan_replicas(pods, "b") == ReplicaPlan("b", {"a": "main", "new": "main"})


def test_gone_primary_is_replaced_by_the_next_newest_ready_pod() -> None:
    pods = [cand("a", 1), cand("c", 2)]
    assert plan_replicas(pods, "b") == ReplicaPlan("c", {"a": "main"})


def test_terminating_or_unready_pods_are_neither_primary_nor_replica() -> None:
    pods = [
        cand("old", 1),
        cand("dying", 5, deleting=True),
        cand("starting", 7, ready=False),
        cand("pending", 8, ready=False, phase="Pending"),
    ]
    assert plan_replicas(pods, "dying") == ReplicaPlan("old", {})


def test_no_usable_pod_means_no_primary_and_no_replica() -> None:
    assert plan_replicas([cand("x", 1, ready=False)], None) == ReplicaPlan(None, {})
    assert plan_replicas([], "x") == ReplicaPlan(None, {})


def test_replicas_keep_their_container_and_ties_break_by_name() -> None:
    pods = [cand("a", 4, container="web"), cand("b", 4, container="web")]
    assert plan_replicas(pods, None) == ReplicaPlan("b", {"a": "web"})


def test_a_pod_whose_ready_condition_lags_comes_after_ready_ones_as_in_selection() -> None:
    lagging = cand("lagging", 9)
    lagging = Candidate(
        PodInfo("lagging", "ns", phase="Running", ready=False, created=lagging.pod.created,
                containers=lagging.pod.containers),
        lagging.container,
    )  # fmt: skip
    assert plan_replicas([cand("a", 1), lagging], None) == ReplicaPlan("a", {"lagging": "main"})

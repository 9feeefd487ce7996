# ruff: noqa: E501  (table rows read best one per line)
"""Container selection rules (spec "Container Selection"), as described table rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from podsync.errors import TargetError
from podsync.transport.k8s_select import (
    Candidate,
    ContainerInfo,
    PodInfo,
    Selector,
    Target,
    Waiting,
    describe_candidates,
    last_built_tags,
    list_candidates,
    pick_candidates,
    pod_info,
    same_image,
    select_target,
    split_image,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def c(
    name: str, image: str = "busybox", ready: bool = True, waiting: str | None = None
) -> ContainerInfo:
    return ContainerInfo(name, image, ready=ready and waiting is None, waiting_reason=waiting)


def pod(
    name: str,
    *containers: ContainerInfo,
    labels: dict[str, str] | None = None,
    age: int = 0,
    phase: str = "Running",
    ready: bool | None = None,
    owner: str | None = None,
    deleting: bool = False,
    ns: str = "default",
) -> PodInfo:
    cs = containers or (c("main"),)
    return PodInfo(
        name=name,
        namespace=ns,
        labels=labels or {"app": "web"},
        phase=phase,
        ready=all(x.ready for x in cs) and phase == "Running" if ready is None else ready,
        created=T0 - dt.timedelta(minutes=age),
        containers=cs,
        deleting=deleting,
        owner=owner,
    )


WEB = Selector(namespace="default", label_selector={"app": "web"})
BACKEND = Selector(namespace="default", image_ref="john/devbackend", image_name="backend")

SELECT_ROWS = [
    ("one pod, one container", [pod("a")], WEB, Target("default", "a", "main", "busybox")),
    ("newest ready pod wins", [pod("old", age=10), pod("new", age=1)], WEB,
     Target("default", "new", "main", "busybox")),
    ("ready beats newer but not ready", [pod("ok", age=10), pod("new", c("main", waiting="ContainerCreating"), phase="Pending")],
     WEB, Target("default", "ok", "main", "busybox")),
    ("terminating pod is skipped", [pod("dying", deleting=True), pod("next", age=5)], WEB,
     Target("default", "next", "main", "busybox")),
    ("labels must all match", [pod("a", labels={"app": "web", "tier": "x"}), pod("b", labels={"app": "web"})],
     replace(WEB, label_selector={"app": "web", "tier": "x"}), Target("default", "a", "main", "busybox")),
    ("other namespaces do not count", [pod("a", ns="other")], WEB,
     Waiting("NoPod", "no pod matches: pods with labels app=web in namespace default")),
    ("containerName picks among several", [pod("a", c("container-0", "john/devbackend"), c("container-1", "john/debugger"))],
     replace(WEB, container="container-1"), Target("default", "a", "container-1", "john/debugger")),
    ("imageName ignores tag, digest, docker.io", [pod("a", c("c0", "docker.io/john/devbackend:abc@sha256:00"), c("c1", "john/debugger"))],
     BACKEND, Target("default", "a", "c0", "docker.io/john/devbackend:abc@sha256:00")),
    ("imageName second sync entry", [pod("a", c("c0", "john/devbackend:1"), c("c1", "john/debugger:1"))],
     replace(BACKEND, image_ref="john/debugger", image_name="backend-debugger"), Target("default", "a", "c1", "john/debugger:1")),
    ("last built tag preferred over newer pod", [pod("built", c("c", "john/devbackend:t2"), age=9, owner="Deployment/b"),
                                                  pod("stale", c("c", "john/devbackend:t1"), age=1, owner="Deployment/b")],
     replace(BACKEND, last_built_tag="t2"), Target("default", "built", "c", "john/devbackend:t2")),
    ("replicas of one workload are fine", [pod("r1", c("c", "john/devbackend"), age=3, owner="Deployment/b"),
                                            pod("r2", c("c", "john/devbackend"), age=2, owner="Deployment/b")],
     BACKEND, Target("default", "r2", "c", "john/devbackend")),
    ("pending pod: wait with its reason", [pod("p", c("main", ready=False), phase="Pending", ready=False)], WEB,
     Waiting("Pending", "pod p (container main) is not ready: Pending", "p", "main")),
    ("image pull backoff", [pod("p", c("main", waiting="ImagePullBackOff"), phase="Pending")], WEB,
     Waiting("ImagePullBackOff", "pod p (container main) is not ready: ImagePullBackOff", "p", "main")),
    ("crash loop", [pod("p", c("main", waiting="CrashLoopBackOff"))], WEB,
     Waiting("CrashLoopBackOff", "pod p (container main) is not ready: CrashLoopBackOff", "p", "main")),
    ("no pod at all", [], WEB, Waiting("NoPod", "no pod matches: pods with labels app=web in namespace default")),
    ("by pod name", [pod("a"), pod("b")], Selector(namespace="default", pod="a"), Target("default", "a", "main", "busybox")),
]  # fmt: skip


@pytest.mark.parametrize(("pods", "sel", "expected"), [r[1:] for r in SELECT_ROWS],
                         ids=[r[0] for r in SELECT_ROWS])  # fmt: skip
def test_select(pods: list[PodInfo], sel: Selector, expected: Target | Waiting) -> None:
    assert select_target(pods, sel) == expected


ERROR_ROWS = [
    ("several containers without containerName", [pod("a", c("container-0"), c("container-1"))], WEB,
     r"^pod a has 2 containers \(container-0, container-1\): choose one with --container \(containerName in devspace.yaml\), or --pick$"),
    ("unknown containerName lists names", [pod("a", c("x"), c("y"))], replace(WEB, container="z"),
     r"^container z not found in pod a \(containers: x, y\)$"),
    ("two containers run the image", [pod("a", c("c0", "john/devbackend:1"), c("c1", "john/devbackend:2"))], BACKEND,
     r"several containers of pod a run john/devbackend \(c0, c1\)"),
    ("image used by two workloads", [pod("a", c("c", "john/devbackend"), owner="Deployment/one"),
                                     pod("b", c("c", "john/devbackend"), owner="Deployment/two")], BACKEND,
     r"used by several workloads \(Deployment/one, Deployment/two\)"),
]  # fmt: skip


@pytest.mark.parametrize(("pods", "sel", "pattern"), [r[1:] for r in ERROR_ROWS],
                         ids=[r[0] for r in ERROR_ROWS])  # fmt: skip
def test_select_errors(pods: list[PodInfo], sel: Selector, pattern: str) -> None:
    with pytest.raises(TargetError, match=pattern):
        select_target(pods, sel)


IMAGE_ROWS = [
    ("busybox", ("docker.io/library/busybox", None)),
    ("busybox:1.36", ("docker.io/library/busybox", "1.36")),
    ("library/busybox@sha256:abc", ("docker.io/library/busybox", None)),
    ("index.docker.io/john/app:v1", ("docker.io/john/app", "v1")),
    ("localhost:5000/app:dev", ("localhost:5000/app", "dev")),
    ("gcr.io/proj/app:1@sha256:ff", ("gcr.io/proj/app", "1")),
    ("registry:5000/team/App", ("registry:5000/team/app", None)),
]


@pytest.mark.parametrize(("ref", "expected"), IMAGE_ROWS, ids=[r[0] for r in IMAGE_ROWS])
def test_split_image(ref: str, expected: tuple[str, str | None]) -> None:
    assert split_image(ref) == expected


def test_same_image_is_not_a_prefix_match() -> None:
    assert same_image("john/devbackend", "docker.io/john/devbackend:latest")
    assert not same_image("john/devbackend", "john/devbackend-debug")
    assert not same_image("john/app", "quay.io/john/app")


def test_candidates_are_listed_best_first_for_a_picker() -> None:
    pods = [
        pod("old", age=30),
        pod("crash", c("main", waiting="CrashLoopBackOff"), age=1),
        pod("new", age=2),
    ]
    cands = list_candidates(pods, WEB)
    assert [x.pod.name for x in cands] == ["new", "old", "crash"]
    assert all(isinstance(x, Candidate) for x in cands)
    assert describe_candidates(cands) == (
        "new:main (busybox, Ready); old:main (busybox, Ready); crash:main (busybox, CrashLoopBackOff)"
    )


def test_pod_info_from_api_json() -> None:
    obj = {
        "metadata": {
            "name": "app-7d9f-x1", "namespace": "dev", "labels": {"pod-template-hash": "7d9f"},
            "creationTimestamp": "2026-01-01T10:00:00Z", "deletionTimestamp": None,
            "ownerReferences": [{"kind": "ReplicaSet", "name": "app-7d9f", "controller": True}],
        },
        "spec": {"containers": [{"name": "main", "image": "john/app:v2"}, {"name": "side", "image": "x"}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"name": "main", "ready": False, "image": "docker.io/john/app:v2",
                 "state": {"waiting": {"reason": "ImagePullBackOff"}}},
                {"name": "side", "ready": True, "state": {"running": {}}},
            ],
        },
    }  # fmt: skip
    info = pod_info(obj)
    assert info.owner == "Deployment/app"
    assert info.created == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert info.containers == (
        ContainerInfo("main", "john/app:v2", False, "ImagePullBackOff"),
        ContainerInfo("side", "x", True, None),
    )
    assert not info.ready and not info.deleting and info.phase == "Pending"
    sel = Selector(namespace="dev", image_ref="john/app", image_name="app")
    assert select_target([info], sel) == Waiting(
        "ImagePullBackOff", "pod app-7d9f-x1 (container main) is not ready: ImagePullBackOff",
        "app-7d9f-x1", "main",
    )  # fmt: skip
    unscheduled = pod_info({"metadata": {"name": "u"}, "status": {"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}})  # fmt: skip
    assert unscheduled.reason == "Unschedulable" and unscheduled.containers == ()


def test_last_built_tags_from_generated_yaml() -> None:
    generated = {
        "profiles": {"": {"images": {"backend": {"imageName": "john/devbackend", "tag": "a1b2"}}}},
    }
    assert last_built_tags(generated) == {"backend": "a1b2", "john/devbackend": "a1b2"}
    assert last_built_tags({}) == {}


PICK_ROWS = [
    ("a pod's every container, not an error", [pod("py", c("main"), c("helper"))],
     Selector(namespace="default", pod="py"), ["py:main", "py:helper"]),
    ("no selector: every pod and container of the namespace, ready first",
     [pod("a", age=5), pod("b", c("x"), c("y"), age=1), pod("c", c("main", waiting="ErrImageNeverPull")),
      pod("elsewhere", ns="other")],
     Selector(namespace="default"), ["b:x", "b:y", "a:main", "c:main"]),
    ("labels narrow the pods", [pod("a", labels={"app": "web"}), pod("b", labels={"app": "db"})],
     WEB, ["a:main"]),
    ("--container narrows the containers", [pod("a", c("main"), c("helper")), pod("b", c("main"), age=1)],
     Selector(namespace="default", container="main"), ["a:main", "b:main"]),
    ("an image: only containers running it", [pod("a", c("c0", "john/devbackend:2"), c("c1", "john/debugger"))],
     BACKEND, ["a:c0"]),
    ("terminating pods are not offered", [pod("dying", deleting=True), pod("next")],
     Selector(namespace="default"), ["next:main"]),
    ("a replaced pod: same workload, same container", [pod("web-1", owner="Deployment/web"), pod("db-1", owner="Deployment/db")],
     Selector(namespace="default", owner="Deployment/web", container="main"), ["web-1:main"]),
]  # fmt: skip


@pytest.mark.parametrize(("pods", "sel", "expected"), [r[1:] for r in PICK_ROWS],
                         ids=[r[0] for r in PICK_ROWS])  # fmt: skip
def test_pick_candidates(pods: list[PodInfo], sel: Selector, expected: list[str]) -> None:
    assert [f"{x.pod.name}:{x.container.name}" for x in pick_candidates(pods, sel)] == expected

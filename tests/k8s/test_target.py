"""From a TargetSpec to a transport: the spec's container selection against real pods of the
cluster kit, waiting for a pod that is not ready yet (with its own reason), giving up with
that reason, and the candidates a picker offers."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import pytest
from tests.k8s.kit import Kube, container
from tests.support.wait import wait_until

from podsync.engine.spec import TargetSpec
from podsync.errors import TargetError
from podsync.transport.k8s_select import Selector, Waiting
from podsync.transport.k8s_target import (
    KubeTarget,
    find_candidates,
    open_kubernetes_target,
    read_pod,
)
from podsync.transport.kubeconfig import load_api_access

pytestmark = pytest.mark.k8s


@pytest.fixture
def ns(space: Kube, monkeypatch: pytest.MonkeyPatch) -> Kube:
    """A namespace of its own, as the kubeconfig's context namespace."""
    monkeypatch.setenv("KUBECONFIG", str(space.kubeconfig))
    return space


def test_spec_example_select_by_image_two_containers(ns: Kube) -> None:
    ns.pod("app-pod", [container("container-0", ns.images.aliases["john/devbackend"]),
                       container("container-1", ns.images.aliases["john/debugger"])])  # fmt: skip

    async def go() -> tuple[str, str]:
        first = TargetSpec(kind="kubernetes", image_name="backend", image_ref="john/devbackend")
        second = TargetSpec(kind="kubernetes", image_name="backend-debugger",
                            image_ref="docker.io/john/debugger:latest")  # fmt: skip
        t1 = await open_kubernetes_target(first, timeout=10)
        t2 = await open_kubernetes_target(second, timeout=10)
        assert (await t2.run(["true"])).exit_code == 0
        # What reaching the pod cost, for sync.log's phase timings.
        assert set(t2.phase_seconds) == {"kubeconfig", "select", "exec_dial"}
        assert all(0 < v < 60 for v in t2.phase_seconds.values()), t2.phase_seconds
        return t1.description, t2.description

    d1, d2 = asyncio.run(go())
    assert d1 == f"pod {ns.namespace}/app-pod:container-0"
    assert d2 == f"pod {ns.namespace}/app-pod:container-1"


def test_spec_example_label_selector_with_container_name_newest_wins(ns: Kube) -> None:
    labels = {"app.kubernetes.io/name": "devspace-app", "app.kubernetes.io/component": "x"}
    two = [container("container-0", ns.images.busybox), container("container-1", ns.images.busybox)]
    ns.pod("old", two, labels=labels)
    (born,) = [p["metadata"]["creationTimestamp"] for p in ns.pods("app.kubernetes.io/component=x")]
    born_at = dt.datetime.fromisoformat(born.replace("Z", "+00:00"))
    # creationTimestamp has one-second resolution: make "newer" unambiguous.
    wait_until(lambda: dt.datetime.now(dt.UTC) >= born_at + dt.timedelta(seconds=1), 5)
    ns.pod("new", two, labels=labels)
    spec = TargetSpec(kind="kubernetes", label_selector=labels, container="container-0")
    t = asyncio.run(open_kubernetes_target(spec, timeout=10))
    assert t.description == f"pod {ns.namespace}/new:container-0"
    no_name = TargetSpec(kind="kubernetes", label_selector=labels)
    with pytest.raises(TargetError, match=r"has 2 containers \(container-0, container-1\)"):
        asyncio.run(open_kubernetes_target(no_name, timeout=10))


def test_waits_for_a_pod_still_initialising_and_reports_why(ns: Kube) -> None:
    """A real pod held in its init container until the test lets it go."""
    gate = container("gate", ns.images.busybox,
                     ["sh", "-c", "until [ -e /tmp/go ]; do sleep 0.05; done"])  # fmt: skip
    ns.pod("slow", [container("main", ns.images.busybox)], labels={"app": "slow"},
           init=[gate], wait=False)  # fmt: skip
    seen: list[Waiting] = []
    released = threading.Event()

    def release() -> None:
        def gate_running() -> bool:
            return ns.exec("slow", ["touch", "/tmp/go"], container="gate").returncode == 0

        wait_until(gate_running, 60, message="the init container never ran")

    def on_wait(w: Waiting) -> None:
        seen.append(w)
        if not released.is_set():
            released.set()  # the pod may start once we have said what we wait for
            threading.Thread(target=release, daemon=True).start()

    spec = TargetSpec(kind="kubernetes", label_selector={"app": "slow"})
    t = asyncio.run(open_kubernetes_target(spec, timeout=90, on_wait=on_wait))
    assert t.description == f"pod {ns.namespace}/slow:main"
    assert seen and seen[0].pod == "slow"
    assert seen[0].reason in ("Pending", "PodInitializing"), seen


def test_gives_up_with_the_pods_own_reason(ns: Kube) -> None:
    """imagePullPolicy Never and an image the node does not have: the kubelet's own reason."""
    ns.pod("noimage", [container("main", "local/not-imported:1")], labels={"app": "noimage"},
           wait=False)  # fmt: skip

    def reason() -> bool:
        (obj,) = ns.pods("app=noimage")
        statuses = obj.get("status", {}).get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting") or {}
        return waiting.get("reason") == "ErrImageNeverPull"

    wait_until(reason, 60, message="the kubelet never said ErrImageNeverPull")
    spec = TargetSpec(kind="kubernetes", label_selector={"app": "noimage"})
    with pytest.raises(TargetError, match=r"gave up after 1 s: .* is not ready: ErrImageNeverPull"):
        asyncio.run(open_kubernetes_target(spec, timeout=1))
    none = TargetSpec(kind="kubernetes", label_selector={"app": "nothing"})
    with pytest.raises(TargetError, match="no pod matches: pods with labels app=nothing"):
        asyncio.run(open_kubernetes_target(none, timeout=0.5))
    gone = TargetSpec(kind="kubernetes", pod="never-made")
    with pytest.raises(TargetError, match="no pod matches: pod never-made in namespace"):
        asyncio.run(open_kubernetes_target(gone, timeout=0.5))


def test_target_spec_is_a_kube_target() -> None:
    spec: KubeTarget = TargetSpec(kind="kubernetes", pod="x")  # checked by mypy
    assert spec.pod == "x"


def test_candidates_for_a_picker_and_reading_a_pod(ns: Kube) -> None:
    ns.pod("a", labels={"app": "pick"})
    ns.pod("b", [container("main", "local/not-imported:1")], labels={"app": "pick"}, wait=False)
    api = load_api_access(None, None)
    sel = Selector(namespace=ns.namespace, label_selector={"app": "pick"})

    async def go() -> tuple[list[str], bool, bool]:
        cands = await find_candidates(api, sel)
        before = await read_pod(api, ns.namespace, "a")
        await asyncio.to_thread(ns.delete_pod, "a")
        after = await read_pod(api, ns.namespace, "a")
        return [c.describe() for c in cands], before is not None and before.ready, after is None

    described, was_ready, gone = asyncio.run(go())
    assert described[0] == f"a:main ({ns.images.py}, Ready)"
    assert described[1].startswith("b:main (local/not-imported:1, ")
    assert was_ready and gone

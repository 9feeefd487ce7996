"""From a TargetSpec to a transport: selection against pods the emulator really runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid

import pytest

from k8s_emulator.fixture import K8sApi, wait_until
from podsync.engine.spec import TargetSpec
from podsync.errors import TargetError
from podsync.transport.k8s_select import Selector, Waiting
from podsync.transport.kubeconfig import load_api_access
from podsync.transport.kubernetes import (
    KubeTarget,
    find_candidates,
    open_kubernetes_target,
    read_pod,
)

pytestmark = pytest.mark.docker


@pytest.fixture(autouse=True)
def _kubeconfig(k8s: K8sApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(k8s.kubeconfig_path))


def _app() -> str:
    return f"app-{uuid.uuid4().hex[:6]}"


def test_spec_example_select_by_image_two_containers(k8s: K8sApi) -> None:
    app = _app()
    k8s.create_pod(f"{app}-pod", labels={"app": app}, containers=[
        ("container-0", "john/devbackend:3f2a"), ("container-1", "john/debugger")])  # fmt: skip

    async def go() -> tuple[str, str]:
        # The two containers share the test image, so tell them apart by what the spec names.
        first = TargetSpec(kind="kubernetes", image_name="backend", image_ref="john/devbackend")
        second = TargetSpec(kind="kubernetes", image_name="backend-debugger",
                            image_ref="docker.io/john/debugger:latest")  # fmt: skip
        t1 = await open_kubernetes_target(first, timeout=10)
        t2 = await open_kubernetes_target(second, timeout=10)
        assert (await t2.run(["true"])).exit_code == 0
        return t1.description, t2.description

    d1, d2 = asyncio.run(go())
    assert d1 == f"pod default/{app}-pod:container-0"
    assert d2 == f"pod default/{app}-pod:container-1"


def test_spec_example_label_selector_with_container_name(k8s: K8sApi) -> None:
    app = _app()
    labels = {"app.kubernetes.io/name": "devspace-app", "app.kubernetes.io/component": app}
    two = [("container-0", "busybox"), ("container-1", "busybox")]
    old = k8s.create_pod(f"{app}-old", labels=labels, containers=two)
    # creationTimestamp has one-second resolution: make "newer" unambiguous.
    born = dt.datetime.fromisoformat(old["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    wait_until(lambda: dt.datetime.now(dt.UTC) >= born + dt.timedelta(seconds=1), 5, "a new second")
    k8s.create_pod(f"{app}-new", labels=labels, containers=two)
    spec = TargetSpec(kind="kubernetes", label_selector=labels, container="container-0")
    t = asyncio.run(open_kubernetes_target(spec, timeout=10))
    assert t.description == f"pod default/{app}-new:container-0"
    no_name = TargetSpec(kind="kubernetes", label_selector=labels)
    with pytest.raises(TargetError, match=r"has 2 containers \(container-0, container-1\)"):
        asyncio.run(open_kubernetes_target(no_name, timeout=10))


def test_waits_for_a_pending_pod_and_reports_why(k8s: K8sApi) -> None:
    app = _app()
    k8s.create_pod(f"{app}-p", labels={"app": app}, wait=False,
                   annotations={"emulator.podsync.test/state": "Pending"})  # fmt: skip
    seen: list[Waiting] = []
    released = threading.Event()

    def on_wait(w: Waiting) -> None:
        seen.append(w)
        if w.reason == "Pending" and not released.is_set():
            released.set()  # the pod gets scheduled once we have said what we wait for
            threading.Thread(target=k8s.emulator.resume, args=("default", f"{app}-p")).start()

    spec = TargetSpec(kind="kubernetes", label_selector={"app": app})
    t = asyncio.run(open_kubernetes_target(spec, timeout=60, on_wait=on_wait))
    assert t.description == f"pod default/{app}-p:main"
    assert seen and seen[0].reason == "Pending"


def test_gives_up_with_the_pods_own_reason(k8s: K8sApi) -> None:
    app = _app()
    k8s.create_pod(f"{app}-c", labels={"app": app}, wait=False,
                   annotations={"emulator.podsync.test/state": "CrashLoopBackOff"})  # fmt: skip
    spec = TargetSpec(kind="kubernetes", label_selector={"app": app})
    with pytest.raises(TargetError, match=r"gave up after 1 s: .* is not ready: CrashLoopBackOff"):
        asyncio.run(open_kubernetes_target(spec, timeout=1))
    none = TargetSpec(kind="kubernetes", label_selector={"app": "nothing-" + app})
    with pytest.raises(TargetError, match="no pod matches: pods with labels app=nothing-"):
        asyncio.run(open_kubernetes_target(none, timeout=0.5))


def test_target_spec_is_a_kube_target() -> None:
    spec: KubeTarget = TargetSpec(kind="kubernetes", pod="x")  # checked by mypy
    assert spec.pod == "x"


def test_candidates_for_a_picker_and_reading_a_pod(k8s: K8sApi) -> None:
    app = _app()
    k8s.create_pod(f"{app}-a", labels={"app": app})
    k8s.create_pod(f"{app}-b", labels={"app": app}, wait=False,
                   annotations={"emulator.podsync.test/state": "ImagePullBackOff"})  # fmt: skip
    api = load_api_access(None, None)
    sel = Selector(namespace="default", label_selector={"app": app})

    async def go() -> tuple[list[str], bool, bool]:
        cands = await find_candidates(api, sel)
        before = await read_pod(api, "default", f"{app}-a")
        await asyncio.to_thread(k8s.delete_pod, f"{app}-a")
        after = await read_pod(api, "default", f"{app}-a")
        return [c.describe() for c in cands], before is not None and before.ready, after is None

    described, was_ready, gone = asyncio.run(go())
    assert described == [
        f"{app}-a:main (busybox, Ready)",
        f"{app}-b:main (busybox, ImagePullBackOff)",
    ]
    assert was_ready and gone

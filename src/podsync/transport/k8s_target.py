"""From a TargetSpec to a :class:`~podsync.transport.kubernetes.KubernetesTransport`: which pod.

Owns: :func:`open_kubernetes_target` (kubeconfig, the fewest API requests: one GET for a pod
name, else one list of the namespace, label-filtered by the server; the pure choice of
``k8s_select``; waiting, polling, while the best match is not ready), ``--pick``
(:func:`open_picked_target`, the UI is the caller's) and pod reads for whoever follows a pod.
May import: the standard library, ``podsync.errors`` and ``podsync.transport``. Knows nothing
of sync.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from podsync.errors import TargetError, UsageError
from podsync.transport.k8s_rest import get_json
from podsync.transport.k8s_select import (
    Candidate,
    PodInfo,
    Selector,
    Target,
    Waiting,
    label_selector_query,
    list_candidates,
    pick_candidates,
    pod_info,
    select_target,
)
from podsync.transport.kubeconfig import ApiAccess, load_api_access
from podsync.transport.kubernetes import KubernetesTransport


class KubeTarget(Protocol):
    """What selection reads of ``podsync.engine.spec.TargetSpec`` (kept structural: the
    transport layer does not import the engine's modules)."""

    @property
    def pod(self) -> str | None: ...
    @property
    def label_selector(self) -> dict[str, str] | None: ...
    @property
    def image_name(self) -> str | None: ...
    @property
    def image_ref(self) -> str | None: ...
    @property
    def container(self) -> str | None: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def kube_context(self) -> str | None: ...


def selector_for(
    spec: KubeTarget, namespace: str, last_built_tag: str | None = None, picking: bool = False
) -> Selector:
    """The pure selection options of a kubernetes :class:`TargetSpec` (``picking``: none of
    pod, labelSelector, imageName is fine, --pick then offers every pod of the namespace)."""
    given = sum(x is not None for x in (spec.pod, spec.label_selector, spec.image_name))
    if given > 1 or (given == 0 and not picking):
        raise UsageError("set exactly one of pod, labelSelector or imageName")
    if spec.image_name is not None and not spec.image_ref:
        raise UsageError(f"imageName {spec.image_name}: no image is known for it")
    return Selector(
        namespace=namespace,
        pod=spec.pod,
        label_selector=spec.label_selector,
        image_ref=spec.image_ref if spec.image_name is not None else None,
        image_name=spec.image_name,
        container=spec.container,
        last_built_tag=last_built_tag,
    )


def _pods_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/pods"
    return path if name is None else f"{path}/{urllib.parse.quote(name, safe='')}"


def list_pod_objects(
    api: ApiAccess, namespace: str, label_selector: str | None = None
) -> list[dict[str, Any]]:
    """Pods of ``namespace`` as API JSON, label-filtered by the server (blocking)."""
    query = {"labelSelector": label_selector} if label_selector else None
    what = f"list pods in namespace {namespace}"
    body = get_json(api, _pods_path(namespace), what, query)
    return [dict(item) for item in (body or {}).get("items") or []]


def read_pod_object(api: ApiAccess, namespace: str, name: str) -> dict[str, Any] | None:
    """One pod as API JSON, None when it does not exist (blocking)."""
    return get_json(api, _pods_path(namespace, name), f"read pod {namespace}/{name}")


async def list_pods(api: ApiAccess, sel: Selector) -> list[PodInfo]:
    """The pods the selector can match: one GET for a pod name, else one list of the
    namespace (label-filtered by the server when the selector has labels)."""
    if sel.pod is not None:
        obj = await asyncio.to_thread(read_pod_object, api, sel.namespace, sel.pod)
        return [] if obj is None else [pod_info(obj)]
    labels = label_selector_query(sel.label_selector) if sel.label_selector else None
    objs = await asyncio.to_thread(list_pod_objects, api, sel.namespace, labels)
    return [pod_info(o) for o in objs]


async def wait_for_target(
    api: ApiAccess,
    sel: Selector,
    timeout: float = 300.0,
    on_wait: Callable[[Waiting], None] | None = None,
) -> Target:
    """Select the target, waiting (polling) while the best match is not ready.

    ``on_wait`` hears every new :class:`Waiting` (to show what we wait for); at the deadline
    the pod's own reason is raised as a TargetError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay, last = 0.2, None
    while True:
        result = select_target(await list_pods(api, sel), sel)
        if isinstance(result, Target):
            return result
        if result != last and on_wait is not None:
            on_wait(result)
        last = result
        if loop.time() + delay > deadline:
            raise TargetError(f"gave up after {timeout:g} s: {result.message}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)


async def open_kubernetes_target(
    spec: KubeTarget,
    timeout: float = 300.0,
    on_wait: Callable[[Waiting], None] | None = None,
    last_built_tag: str | None = None,
) -> KubernetesTransport:
    """kubeconfig -> selection (waiting for a ready pod) -> a transport into that container."""
    started = time.perf_counter()
    api = await asyncio.to_thread(load_api_access, spec.kube_context, spec.namespace)
    loaded = time.perf_counter()
    sel = selector_for(spec, api.namespace, last_built_tag)
    target = await wait_for_target(api, sel, timeout, on_wait)
    transport = KubernetesTransport(target.pod, target.container, target.namespace, api)
    transport.phase_seconds.update(kubeconfig=loaded - started, select=time.perf_counter() - loaded)
    return transport


@dataclass(frozen=True)
class Picked:
    """A ``--pick`` choice, kept so that a reconnect goes back to it (or, when the pod was
    replaced, to the newest pod of the same workload, same container)."""

    pod: str
    container: str
    owner: str | None


#: Shows the candidates to the user and returns the chosen one.
Chooser = Callable[[list[Candidate]], Awaitable[Candidate]]


async def _wait_for_candidates(
    api: ApiAccess, sel: Selector, timeout: float, on_wait: Callable[[Waiting], None] | None
) -> list[Candidate]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay, said = 0.2, False
    while True:
        found = pick_candidates(await list_pods(api, sel), sel)
        if found:
            return found
        message = f"no pod matches: {sel.describe()}"
        if on_wait is not None and not said:
            on_wait(Waiting("NoPod", message))
            said = True
        if loop.time() + delay > deadline:
            raise TargetError(f"gave up after {timeout:g} s: {message}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)


async def open_picked_target(
    spec: KubeTarget,
    choose: Chooser,
    timeout: float = 300.0,
    on_wait: Callable[[Waiting], None] | None = None,
    last_built_tag: str | None = None,
    previous: Picked | None = None,
) -> tuple[KubernetesTransport, Picked]:
    """``--pick``: every (pod, container) the spec matches (every one of the namespace when it
    names none) goes to ``choose`` when there are several; then wait until that container is
    ready. With ``previous``, no question: its pod, or its workload's newest pod."""
    api = await asyncio.to_thread(load_api_access, spec.kube_context, spec.namespace)
    base = selector_for(spec, api.namespace, last_built_tag, picking=True)
    if previous is not None:
        by_name = previous.pod if previous.owner is None else None
        sel = dataclasses.replace(
            base, pod=by_name, owner=previous.owner, container=previous.container
        )
    else:
        candidates = await _wait_for_candidates(api, base, timeout, on_wait)
        chosen = candidates[0] if len(candidates) == 1 else await choose(candidates)
        previous = Picked(chosen.pod.name, chosen.container.name, chosen.pod.owner)
        sel = Selector(namespace=api.namespace, pod=previous.pod, container=previous.container)
    target = await wait_for_target(api, sel, timeout, on_wait)
    transport = KubernetesTransport(target.pod, target.container, target.namespace, api)
    return transport, dataclasses.replace(previous, pod=target.pod)


async def find_candidates(api: ApiAccess, sel: Selector) -> list[Candidate]:
    """Every matching (pod, container), best first, for ``--pick`` or an error listing."""
    return list_candidates(await list_pods(api, sel), sel)


async def read_pod(api: ApiAccess, namespace: str, name: str) -> PodInfo | None:
    """The pod now (None when it is gone): to notice deletion, restarts or replacement."""
    obj = await asyncio.to_thread(read_pod_object, api, namespace, name)
    return None if obj is None else pod_info(obj)

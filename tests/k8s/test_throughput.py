"""Bulk data through podsync's WebSocket exec and through ``kubectl exec -i``, same real
cluster, same pod: both must carry 16 MiB of random bytes through ``cat`` intact, both ways at
once.

How fast each is, is a benchmark, not a test (this machine is shared and noisy):
``python bench/k8s_run.py`` measures podsync against ``kubectl exec`` floors.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from tests.k8s.kit import Kube, container, pipe_through

from podsync.transport.kubeconfig import load_api_access
from podsync.transport.kubernetes import KubernetesTransport

pytestmark = pytest.mark.k8s

SIZE = 16 << 20


def test_websocket_exec_and_kubectl_carry_bulk_data_intact(
    kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = kube.pod("bulk", [container("main", kube.images.busybox)])
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    access = load_api_access(None, None)
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).digest()

    async def through_websocket() -> tuple[bytes, int]:
        t = KubernetesTransport(pod, "main", kube.namespace, access, mode="websocket")
        ch = await t.spawn(["cat"], lambda line: None)
        out = await pipe_through(ch, data)
        return out, await ch.wait()

    out, code = asyncio.run(through_websocket())
    assert code == 0 and hashlib.sha256(out).digest() == digest
    res = kube.exec(pod, ["cat"], input=data)
    assert res.returncode == 0 and hashlib.sha256(res.stdout).digest() == digest

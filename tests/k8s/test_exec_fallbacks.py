"""Exec paths a real API server cannot be made to take, against the API emulator
(tests/k8s_emulator: a test double of the API server with real Docker containers behind it):
a server that speaks only ``v4.channel.k8s.io`` (no way to close stdin), and a refused
WebSocket upgrade (a proxy without WebSocket support), where podsync falls back to
``kubectl exec -i``. Everything else about exec runs on the real cluster (test_transport.py).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
from tests.k8s.kit import pipe_through

from k8s_emulator.fixture import K8sApi
from podsync.errors import TransportError
from podsync.transport.k8s_exec import WebSocketExecChannel
from podsync.transport.kubeconfig import ApiAccess, load_api_access
from podsync.transport.kubernetes import KubernetesTransport

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def pod(k8s_api: K8sApi) -> Iterator[str]:
    name = f"fb-{uuid.uuid4().hex[:6]}"
    k8s_api.create_pod(name, labels={"app": "fallback"})
    yield name
    k8s_api.delete_pod(name)


@pytest.fixture
def access(k8s: K8sApi, monkeypatch: pytest.MonkeyPatch) -> ApiAccess:
    monkeypatch.setenv("KUBECONFIG", str(k8s.kubeconfig_path))
    monkeypatch.delenv("PODSYNC_K8S_EXEC", raising=False)
    return load_api_access(None, None)


def transport(access: ApiAccess, pod: str, **kw: object) -> KubernetesTransport:
    return KubernetesTransport(pod, "main", access.namespace, access, **kw)  # type: ignore[arg-type]


def test_v4_only_server(access: ApiAccess, pod: str, k8s: K8sApi) -> None:
    k8s.emulator.switches.exec_protocols = ("v4.channel.k8s.io",)
    data = os.urandom(1 << 20)

    async def go() -> tuple[bytes, bool, bytes]:
        t = transport(access, pod)
        res = await t.run(["cat"], data, timeout=60)  # EOF via `head -c`: v4 cannot close stdin
        ch = await t.spawn(["head", "-c", "5"], lambda line: None)
        assert isinstance(ch, WebSocketExecChannel)
        await ch.write(b"hello world")
        echoed = await ch.read(100)
        await ch.kill()
        return res.stdout, ch.v5, echoed

    out, v5, echoed = asyncio.run(go())
    assert out == data and not v5 and echoed == b"hello"
    assert k8s.emulator.switches.exec_log[-1][2] == "v4.channel.k8s.io"


def test_falls_back_to_kubectl_when_upgrade_is_refused(
    access: ApiAccess, pod: str, k8s: K8sApi
) -> None:
    k8s.emulator.switches.refuse_upgrade_except = ("kubectl/",)
    data = os.urandom(1 << 20)

    async def go() -> tuple[bytes, int, bool]:
        t = transport(access, pod)
        ch = await t.spawn(["cat"], lambda line: None)
        out = await pipe_through(ch, data)
        return out, (await t.run(["sh", "-c", "exit 4"])).exit_code, t.using_kubectl

    out, code, via_kubectl = asyncio.run(go())
    assert out == data and code == 4 and via_kubectl
    log = k8s.emulator.switches.exec_log
    assert any(ua.startswith("podsync/") and "refused" in chosen for ua, _, chosen in log)
    assert log[-1][0].startswith("kubectl/") and log[-1][2] == "v5.channel.k8s.io"

    forced = transport(access, pod, mode="websocket")
    with pytest.raises(TransportError, match="WebSocket exec refused"):
        asyncio.run(forced.run(["true"]))

"""podsync's KubernetesTransport against the emulator: WebSocket exec, fallbacks, errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8s_emulator.fixture import K8sApi
from podsync.errors import TransportError
from podsync.transport.k8s_exec import WebSocketExecChannel
from podsync.transport.kubeconfig import ApiAccess, load_api_access
from podsync.transport.kubernetes import KubernetesTransport

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def pod(k8s_api: K8sApi) -> Iterator[str]:
    name = f"tr-{uuid.uuid4().hex[:6]}"
    k8s_api.create_pod(name, labels={"app": "transport"}, workdir="/srv/app")
    yield name
    k8s_api.delete_pod(name)


@pytest.fixture
def access(k8s: K8sApi, monkeypatch: pytest.MonkeyPatch) -> ApiAccess:
    monkeypatch.setenv("KUBECONFIG", str(k8s.kubeconfig_path))
    monkeypatch.delenv("PODSYNC_K8S_EXEC", raising=False)
    return load_api_access(None, None)


def transport(access: ApiAccess, pod: str, **kw: object) -> KubernetesTransport:
    return KubernetesTransport(pod, "main", access.namespace, access, **kw)  # type: ignore[arg-type]


async def pipe_through(channel: object, data: bytes, chunk: int = 1 << 20) -> bytes:
    """Write ``data`` and read the echo concurrently (so neither side fills up)."""
    out = bytearray()

    async def feed() -> None:
        for at in range(0, len(data), chunk):
            await channel.write(data[at : at + chunk])  # type: ignore[attr-defined]
        await channel.close_stdin()  # type: ignore[attr-defined]

    async def drain() -> None:
        while block := await channel.read(1 << 20):  # type: ignore[attr-defined]
            out.extend(block)

    await asyncio.gather(feed(), drain())
    return bytes(out)


def test_load_api_access_reads_context_namespace_and_token(access: ApiAccess, k8s: K8sApi) -> None:
    assert access.namespace == "default"
    assert access.context == "emulator"
    assert access.host == k8s.emulator.url
    assert access.auth_headers() == {"Authorization": f"Bearer {k8s.token}"}
    assert load_api_access(None, "other").namespace == "other"
    with pytest.raises(TransportError, match="kube context 'nope' not found"):
        load_api_access("nope", None)


def test_spawn_cat_round_trips_8_mib_binary(access: ApiAccess, pod: str) -> None:
    data = os.urandom(8 << 20)

    async def go() -> tuple[bytes, int, bool]:
        t = transport(access, pod)
        ch = await t.spawn(["cat"], lambda line: None)
        assert isinstance(ch, WebSocketExecChannel)
        out = await pipe_through(ch, data)
        return out, await ch.wait(), ch.v5

    out, code, v5 = asyncio.run(go())
    assert v5 and code == 0
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()


def test_exit_code_and_stderr(access: ApiAccess, pod: str) -> None:
    lines: list[str] = []

    async def go() -> tuple[int, int, bytes, bytes]:
        t = transport(access, pod)
        res = await t.run(["sh", "-c", "exit 3"])
        ch = await t.spawn(["sh", "-c", "echo to-err >&2; echo to-out; exit 5"], lines.append)
        out = await ch.read(100)
        code = await ch.wait()
        res2 = await t.run(["sh", "-c", "echo run-err >&2"])
        return res.exit_code, code, out, res2.stderr

    code, spawned_code, out, run_err = asyncio.run(go())
    assert code == 3 and spawned_code == 5
    assert out == b"to-out\n" and lines == ["to-err"] and run_err == b"run-err\n"


def test_workdir_and_run_with_stdin(access: ApiAccess, pod: str) -> None:
    async def go() -> tuple[str, bytes]:
        t = transport(access, pod)
        return await t.workdir(), (await t.run(["sort"], b"b\na\n")).stdout

    assert asyncio.run(go()) == ("/srv/app", b"a\nb\n")


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


def test_kubectl_mode_from_environment(
    access: ApiAccess, pod: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODSYNC_K8S_EXEC", "kubectl")
    t = KubernetesTransport(pod, "main", "default", access)
    assert t.using_kubectl
    assert asyncio.run(t.run(["echo", "via", "kubectl"])).stdout == b"via kubectl\n"


def test_clear_errors(access: ApiAccess, pod: str, k8s: K8sApi, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    with pytest.raises(TransportError, match=r"^pod default/nope not found$"):
        asyncio.run(transport(access, "nope").run(["true"]))
    wrong = KubernetesTransport(pod, "sidecar", "default", access)
    with pytest.raises(TransportError, match=r"container sidecar not found in pod default/"):
        asyncio.run(wrong.run(["true"]))
    monkeypatch.setenv("KUBECONFIG", str(k8s.emulator.write_kubeconfig(tmp_path / "kc", token="x")))
    bad = load_api_access(None, None)
    with pytest.raises(TransportError, match=r"^unauthorized: the Kubernetes API at https://"):
        asyncio.run(transport(bad, pod).run(["true"]))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(TransportError, match="cannot load kubeconfig"):
        load_api_access(None, None)


def test_cannot_connect(access: ApiAccess, pod: str) -> None:
    import dataclasses

    gone = dataclasses.replace(access, host="https://127.0.0.1:1")
    with pytest.raises(TransportError, match=r"^cannot connect to the Kubernetes API at https://"):
        asyncio.run(transport(gone, pod).run(["true"]))


def test_kill_ends_the_command_in_the_container(access: ApiAccess, pod: str) -> None:
    marker = f"sleep {4000 + os.getpid() % 1000}"

    async def go() -> tuple[bytes, bytes]:
        t = transport(access, pod)
        ch = await t.spawn(["sh", "-c", marker], lambda line: None)
        before = (await t.run(["ps", "-o", "args"])).stdout
        await ch.kill()
        await ch.kill()  # safe twice
        after = (await t.run(["ps", "-o", "args"])).stdout
        return before, after

    before, after = asyncio.run(go())
    assert marker.encode() in before and marker.encode() not in after


def test_exec_credential_plugin_token_is_refreshed_per_dial(
    k8s: K8sApi, pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "calls"
    plugin = tmp_path / "get-token"
    # An already-expired credential: the client must run the plugin again before each dial.
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": k8s.token, "expirationTimestamp": "2001-01-01T00:00:00Z"},
    }
    plugin.write_text(f"#!/bin/sh\necho x >> {counter}\necho '{json.dumps(credential)}'\n")
    plugin.chmod(0o755)
    kubeconfig = json.loads(k8s.kubeconfig_path.read_text())
    kubeconfig["users"] = [{"name": "tester", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin),
        "interactiveMode": "Never"}}}]  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(path))
    access = load_api_access(None, None)
    calls_before = len(counter.read_text().split())

    async def go() -> list[int]:
        t = transport(access, pod)
        return [(await t.run(["true"])).exit_code, (await t.run(["true"])).exit_code]

    assert asyncio.run(go()) == [0, 0]
    assert len(counter.read_text().split()) >= calls_before + 2


def test_container_without_a_shell(k8s: K8sApi, access: ApiAccess) -> None:
    if "shell-less" not in k8s.emulator.kubelet.image_map:
        pytest.skip("podsync-test-shell-less image not built")
    name = f"noshell-{uuid.uuid4().hex[:6]}"
    k8s.create_pod(name, containers=[("main", "shell-less")])
    data = os.urandom(1 << 20)

    async def go() -> tuple[bytes, int, bytes]:
        t = transport(access, name)
        ch = await t.spawn(["/busybox", "cat"], lambda line: None)
        out = await pipe_through(ch, data)
        code = await ch.wait()
        res = await t.run(["/busybox", "sh", "-c", "exit 6"])
        return out, code + res.exit_code, (await t.run(["/busybox", "echo", "ok"])).stdout

    out, codes, echoed = asyncio.run(go())
    assert out == data and codes == 6 and echoed == b"ok\n"


def test_stderr_before_stdout_does_not_stall(access: ApiAccess, pod: str) -> None:
    lines: list[str] = []
    script = "i=0; while [ $i -lt 10000 ]; do echo err-line-$i >&2; i=$((i+1)); done; echo done"

    async def go() -> tuple[bytes, int]:
        ch = await transport(access, pod).spawn(["sh", "-c", script], lines.append)
        out = b""
        while block := await ch.read(100):
            out += block
        return out, await ch.wait()

    out, code = asyncio.run(go())
    assert (out, code) == (b"done\n", 0)
    assert len(lines) == 10000 and lines[-1] == "err-line-9999"  # > 64 KiB pipe


@pytest.mark.parametrize("variant", ["client-certificate", "insecure-skip-tls-verify", "no-ca"])
def test_tls_and_client_certificates_from_kubeconfig(
    k8s: K8sApi, pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    config = json.loads(k8s.kubeconfig_path.read_text())
    cluster = config["clusters"][0]["cluster"]
    if variant == "client-certificate":
        config["users"][0]["user"] = k8s.emulator.client_cert_user()
    else:
        del cluster["certificate-authority-data"]
        if variant == "insecure-skip-tls-verify":
            cluster["insecure-skip-tls-verify"] = True
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    access = load_api_access(None, None)
    if variant == "no-ca":  # the generated CA is in no trust store
        with pytest.raises(TransportError, match=r"^cannot connect to the Kubernetes API at .*"):
            asyncio.run(transport(access, pod).run(["true"]))
        return
    assert "Authorization" not in access.auth_headers() or variant != "client-certificate"
    assert (
        asyncio.run(transport(access, pod).run(["echo", variant])).stdout == f"{variant}\n".encode()
    )
    kubectl = k8s.kubectl("exec", "-i", pod, "--", "echo", "ok", env={"KUBECONFIG": str(path)})
    assert kubectl.stdout == b"ok\n", kubectl.stderr

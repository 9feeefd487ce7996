"""podsync's KubernetesTransport and kubeconfig reading against the real cluster kit:
WebSocket exec (v5), exit codes, kill, clear errors, and every way a kubeconfig can
authenticate and reach the API (client certificates as data or files, tokens, token files, an
exec-credential plugin, CA or insecure-skip-tls-verify, tls-server-name, proxy-url, merged
KUBECONFIG lists). What the real API server cannot be made to do (v4-only exec, a refused
upgrade) is in test_exec_fallbacks.py, against the emulator."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from tests.k8s.kit import Kube, container, kubectl_path, pipe_through

from podsync.errors import TransportError
from podsync.transport.k8s_exec import WebSocketExecChannel
from podsync.transport.k8s_target import read_pod_object
from podsync.transport.kubeconfig import ApiAccess, load_api_access
from podsync.transport.kubernetes import KubernetesTransport

pytestmark = pytest.mark.k8s

POD = "tr"
ROLE = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


@pytest.fixture(scope="module")
def pod(kube: Kube) -> Iterator[str]:
    kube.pod(POD, [container("main", kube.images.busybox, workdir="/srv/app")])
    yield POD
    kube.delete_pod(POD, wait=False)


@pytest.fixture
def access(kube: Kube, monkeypatch: pytest.MonkeyPatch) -> ApiAccess:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.delenv("PODSYNC_K8S_EXEC", raising=False)
    return load_api_access(None, None)


def kubeconfig(kube: Kube) -> dict[str, Any]:
    return dict(YAML(typ="safe").load(kube.kubeconfig.read_text()))


def use(config: dict[str, Any], path: Path, monkeypatch: pytest.MonkeyPatch) -> ApiAccess:
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return load_api_access(None, None)


def transport(access: ApiAccess, pod: str, **kw: Any) -> KubernetesTransport:
    return KubernetesTransport(pod, "main", access.namespace, access, **kw)


def echo(access: ApiAccess, pod: str, word: str) -> bytes:
    return asyncio.run(transport(access, pod).run(["echo", word])).stdout


@pytest.fixture(scope="module")
def sa_token(kube: Kube) -> str:
    """A real ServiceAccount token, allowed to read pods and exec into them (RBAC is on)."""
    name = "podsync-tester"
    kube.kubectl("create", "serviceaccount", name, check=True)
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name}, "rules": ROLE})  # fmt: skip
    kube.kubectl("create", "rolebinding", name, f"--role={name}",
                 f"--serviceaccount={kube.namespace}:{name}", check=True)  # fmt: skip
    token = kube.kubectl("create", "token", name, "--duration=30m", check=True)
    return token.stdout.decode().strip()


def token_user(config: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["users"][0]["user"] = user
    return config


# -- exec -------------------------------------------------------------------------------------
def test_load_api_access_reads_context_namespace_and_credentials(
    access: ApiAccess, kube: Kube
) -> None:
    assert access.namespace == kube.namespace
    assert access.context == "podsync-k8s"
    assert access.host == "https://127.0.0.1:" + access.host.rsplit(":", 1)[1]
    assert access.client_cert is not None and access.ca_pem is not None
    assert access.auth_headers() == {}  # the kit's admin authenticates with its certificate
    assert load_api_access(None, "other").namespace == "other"
    with pytest.raises(TransportError, match="kube context 'nope' not found"):
        load_api_access("nope", None)


def test_spawn_cat_round_trips_8_mib_binary(access: ApiAccess, pod: str) -> None:
    data = os.urandom(8 << 20)

    async def go() -> tuple[bytes, int, bool]:
        ch = await transport(access, pod).spawn(["cat"], lambda line: None)
        assert isinstance(ch, WebSocketExecChannel)
        out = await pipe_through(ch, data)
        return out, await ch.wait(), ch.v5

    out, code, v5 = asyncio.run(go())
    assert v5 and code == 0  # the real API server speaks v5.channel.k8s.io
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


def test_kubectl_mode_from_environment(
    access: ApiAccess, pod: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODSYNC_K8S_EXEC", "kubectl")
    t = KubernetesTransport(pod, "main", access.namespace, access, kubectl=str(kubectl_path()))
    assert t.using_kubectl
    assert asyncio.run(t.run(["echo", "via", "kubectl"])).stdout == b"via kubectl\n"


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


def test_container_without_a_shell(kube: Kube, access: ApiAccess) -> None:
    name = kube.pod("noshell", [container("main", kube.images.shell_less)])
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


# -- errors -----------------------------------------------------------------------------------
def test_clear_errors(
    access: ApiAccess, pod: str, kube: Kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = kube.namespace
    with pytest.raises(TransportError, match=rf"^pod {ns}/nope not found$"):
        asyncio.run(transport(access, "nope").run(["true"]))
    wrong = KubernetesTransport(pod, "sidecar", ns, access)
    with pytest.raises(TransportError, match=rf"container sidecar not found in pod {ns}/{pod}"):
        asyncio.run(wrong.run(["true"]))
    bad = use(token_user(kubeconfig(kube), {"token": "not-a-token"}), tmp_path / "kc", monkeypatch)
    with pytest.raises(TransportError, match=r"^unauthorized: the Kubernetes API at https://"):
        asyncio.run(transport(bad, pod).run(["true"]))
    with pytest.raises(TransportError, match=r"^unauthorized: the Kubernetes API at https://"):
        read_pod_object(bad, ns, pod)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(TransportError, match=r"^cannot load kubeconfig: no kubeconfig at "):
        load_api_access(None, None)
    (tmp_path / "broken").write_text("clusters: [\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "broken"))
    with pytest.raises(TransportError, match=r"^cannot load kubeconfig: "):
        load_api_access(None, None)


def test_cannot_connect(access: ApiAccess, pod: str) -> None:
    gone = dataclasses.replace(access, host="https://127.0.0.1:1")
    with pytest.raises(TransportError, match=r"^cannot connect to the Kubernetes API at https://"):
        asyncio.run(transport(gone, pod).run(["true"]))
    with pytest.raises(TransportError, match=r"^cannot connect to the Kubernetes API at https://"):
        read_pod_object(gone, access.namespace, pod)


def test_forbidden_names_what_was_refused(
    kube: Kube, pod: str, sa_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = use(token_user(kubeconfig(kube), {"token": sa_token}), tmp_path / "kc", monkeypatch)
    with pytest.raises(TransportError, match=r"^forbidden: not allowed to read pod default/x"):
        read_pod_object(dataclasses.replace(limited, namespace="default"), "default", "x")


# -- credentials ------------------------------------------------------------------------------
def test_service_account_token_and_token_file(
    kube: Kube, pod: str, sa_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = kubeconfig(kube)
    by_token = use(token_user(base, {"token": sa_token}), tmp_path / "a", monkeypatch)
    assert by_token.auth_headers() == {"Authorization": f"Bearer {sa_token}"}
    assert echo(by_token, pod, "token") == b"token\n"
    (tmp_path / "token").write_text(sa_token + "\n")
    by_file = use(token_user(base, {"tokenFile": "token"}), tmp_path / "b", monkeypatch)
    assert echo(by_file, pod, "file") == b"file\n"  # relative to the kubeconfig's folder
    assert read_pod_object(by_file, kube.namespace, pod) is not None


def test_exec_credential_plugin_runs_again_when_its_token_has_expired(
    kube: Kube, pod: str, sa_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "calls"
    plugin = tmp_path / "get-token"
    # An already-expired credential: the plugin must run again before each request.
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": sa_token, "expirationTimestamp": "2001-01-01T00:00:00Z"},
    }
    plugin.write_text(
        "#!/bin/sh\n"
        f'echo "$KUBERNETES_EXEC_INFO $PLUGIN_ENV" >> {counter}\n'
        f"echo '{json.dumps(credential)}'\n"
    )
    plugin.chmod(0o755)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                     "command": "./get-token", "env": [{"name": "PLUGIN_ENV", "value": "set"}],
                     "interactiveMode": "Never", "provideClusterInfo": True}}  # fmt: skip
    access = use(token_user(kubeconfig(kube), user), tmp_path / "kc", monkeypatch)
    assert not counter.exists()  # run on first use, not when the kubeconfig is read

    async def go() -> list[int]:
        t = transport(access, pod)
        return [(await t.run(["true"])).exit_code, (await t.run(["true"])).exit_code]

    assert asyncio.run(go()) == [0, 0]
    assert read_pod_object(access, kube.namespace, pod) is not None
    calls = counter.read_text().splitlines()
    assert len(calls) >= 3
    info, env = calls[0].rsplit(" ", 1)
    assert env == "set"
    spec = json.loads(info)["spec"]
    assert spec["interactive"] is False and spec["cluster"]["server"] == access.host


def test_exec_credential_plugin_failure_is_one_line(
    kube: Kube, pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "broken-plugin"
    plugin.write_text("#!/bin/sh\necho 'login required: run sso-login' >&2\nexit 1\n")
    plugin.chmod(0o755)
    user = {"exec": {"command": str(plugin), "interactiveMode": "Never"}}
    access = use(token_user(kubeconfig(kube), user), tmp_path / "kc", monkeypatch)
    with pytest.raises(TransportError, match=r"^credential plugin broken-plugin failed: login req"):
        asyncio.run(transport(access, pod).run(["true"]))
    hint = "Install it with: apt-get install no-such-plugin-x\nthen log in."
    exec_user = {"exec": {"command": "no-such-plugin-x", "installHint": hint}}
    missing = use(token_user(kubeconfig(kube), exec_user),
                  tmp_path / "kc2", monkeypatch)  # fmt: skip
    pattern = "plugin no-such-plugin-x is not installed: Install it with: apt-get install no-such"
    with pytest.raises(TransportError, match=pattern):
        read_pod_object(missing, kube.namespace, pod)


def test_client_certificate_from_files_relative_to_the_kubeconfig(
    kube: Kube, pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kubeconfig(kube)
    user = config["users"][0]["user"]
    cluster = config["clusters"][0]["cluster"]
    (tmp_path / "pki").mkdir()
    for key, name in (("client-certificate-data", "client.crt"), ("client-key-data", "client.key")):
        (tmp_path / "pki" / name).write_bytes(base64.b64decode(user.pop(key)))
    ca = base64.b64decode(cluster.pop("certificate-authority-data"))
    (tmp_path / "pki" / "ca.crt").write_bytes(ca)
    user.update({"client-certificate": "pki/client.crt", "client-key": "pki/client.key"})
    cluster["certificate-authority"] = "pki/ca.crt"
    access = use(config, tmp_path / "kc", monkeypatch)
    assert echo(access, pod, "files") == b"files\n"


@pytest.mark.parametrize("variant", ["insecure-skip-tls-verify", "no-ca", "tls-server-name",
                                     "wrong-tls-server-name"])  # fmt: skip
def test_tls_settings_from_kubeconfig(
    kube: Kube, pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    config = kubeconfig(kube)
    cluster = config["clusters"][0]["cluster"]
    if variant in ("insecure-skip-tls-verify", "no-ca"):
        del cluster["certificate-authority-data"]
        if variant == "insecure-skip-tls-verify":
            cluster["insecure-skip-tls-verify"] = True
    else:  # the server certificate names kubernetes.default, not not-named.example
        good = variant == "tls-server-name"
        cluster["tls-server-name"] = "kubernetes.default" if good else "not-named.example"
    access = use(config, tmp_path / "kc", monkeypatch)
    if variant in ("no-ca", "wrong-tls-server-name"):
        pattern = r"^cannot connect to the Kubernetes API at .*certificate verify failed"
        with pytest.raises(TransportError, match=pattern):
            asyncio.run(transport(access, pod).run(["true"]))
        with pytest.raises(TransportError, match=pattern):
            read_pod_object(access, kube.namespace, pod)
        return
    assert echo(access, pod, variant) == f"{variant}\n".encode()
    assert read_pod_object(access, kube.namespace, pod) is not None
    path = tmp_path / "kc"
    kubectl = kube.kubectl("--kubeconfig", str(path), "exec", pod, "--", "echo", "ok")
    assert kubectl.stdout == b"ok\n", kubectl.stderr  # kubectl reads it the same way


def test_merged_kubeconfig_list_first_file_wins(
    kube: Kube, pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KUBECONFIG=a:b as kubectl merges it: a's current-context and a's entries win, b
    brings what a lacks, missing files in the list are skipped."""
    full = kubeconfig(kube)
    first = {"apiVersion": "v1", "kind": "Config", "current-context": "mine",
             "contexts": [{"name": "mine", "context": {"cluster": "podsync-k8s",
                                                       "user": "kubernetes-admin",
                                                       "namespace": kube.namespace}}],
             "clusters": [], "users": []}  # fmt: skip
    second = copy.deepcopy(full)
    second["current-context"] = "podsync-k8s"
    second["contexts"][0]["context"]["namespace"] = "elsewhere"
    (tmp_path / "a").write_text(json.dumps(first))
    YAML(typ="safe").dump(second, tmp_path / "b")
    merged = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "none"), str(tmp_path / "b")])
    monkeypatch.setenv("KUBECONFIG", merged)
    access = load_api_access(None, None)
    assert (access.context, access.namespace) == ("mine", kube.namespace)
    assert echo(access, pod, "merged") == b"merged\n"
    assert load_api_access("podsync-k8s", None).namespace == "elsewhere"


# -- proxy-url --------------------------------------------------------------------------------
class ConnectProxy:
    """A real HTTP CONNECT proxy on 127.0.0.1 that tunnels only to 127.0.0.1 and counts the
    tunnels it opened (what a corporate proxy in front of an API server does)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.tunnels: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        host, port = target.rsplit(":", 1)
        if method != "CONNECT" or host != "127.0.0.1":
            client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection((host, int(port)))
        self.tunnels.append(target)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_proxy_url_carries_api_requests_and_exec(
    kube: Kube, pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ConnectProxy()
    try:
        config = kubeconfig(kube)
        config["clusters"][0]["cluster"]["proxy-url"] = f"http://127.0.0.1:{proxy.port}"
        access = use(config, tmp_path / "kc", monkeypatch)
        assert read_pod_object(access, kube.namespace, pod) is not None
        assert echo(access, pod, "proxied") == b"proxied\n"
    finally:
        proxy.close()
    api = access.host.removeprefix("https://")
    assert proxy.tunnels.count(api) >= 2  # the GET and the exec WebSocket both went through


def test_kill_returns_while_unread_output_fills_the_channel(access: ApiAccess, pod: str) -> None:
    """A command flooding stdout that nobody reads any more (the endpoint stopped reading):
    kill() ends it and returns, it does not wait forever for room in the full queue."""

    async def go() -> int:
        ch = await transport(access, pod).spawn(["yes", "flood"], lambda line: None)
        assert await ch.read(5) == b"flood"

        async def full() -> None:  # let the unread output pile up to the queue's limit
            while not ch._queue.full():  # type: ignore[union-attr]
                await asyncio.sleep(0.01)

        await asyncio.wait_for(full(), 30)
        await asyncio.wait_for(ch.kill(), 40)
        return await asyncio.wait_for(ch.wait(), 10)

    assert asyncio.run(go()) != 0

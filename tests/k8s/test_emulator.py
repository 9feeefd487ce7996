"""The emulator stays faithful: the real kubectl 1.32 works against it.

Every test here drives real kubectl (or a raw HTTPS client for the watch stream) against the
emulator, which runs real Docker containers.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pty
import select
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from k8s_emulator.fixture import K8sApi, is_ready, wait_until

pytestmark = pytest.mark.docker


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_kubectl_get_pods_with_label_selectors(k8s: K8sApi) -> None:
    a, b = _name("sel-a"), _name("sel-b")
    k8s.create_pod(a, labels={"app": "sel", "tier": "web"})
    k8s.create_pod(b, labels={"app": "sel", "tier": "db"})
    out = k8s.kubectl("get", "pods", "-l", "app=sel,tier=web")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert [ln.split()[:3] for ln in lines[1:]] == [[a, "1/1", "Running"]]
    out = k8s.kubectl("get", "pods", "-l", "tier in (web,db),tier!=web", "-o", "name")
    assert out.stdout.decode().split() == [f"pod/{b}"]
    out = k8s.kubectl("get", "pods", "-l", "app=nothing-has-this")
    assert out.returncode == 0 and b"No resources found" in out.stderr


def test_kubectl_exec_round_trips_binary_data(k8s: K8sApi) -> None:
    pod = _name("exec")
    k8s.create_pod(pod)
    data = os.urandom(3 << 20) + bytes(range(256)) * 64
    out = k8s.kubectl("exec", "-i", pod, "--", "cat", input=data)
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    failing = k8s.kubectl("exec", "-i", pod, "--", "sh", "-c", "echo oops >&2; exit 7")
    assert failing.returncode == 7
    assert b"oops" in failing.stderr
    # kubectl 1.32 talks WebSocket (v5) first; the emulator records what it offered.
    assert any(ua.startswith("kubectl/v1.32") and chosen == "v5.channel.k8s.io"
               for ua, _, chosen in k8s.emulator.switches.exec_log)  # fmt: skip


def test_kubectl_logs_and_delete(k8s: K8sApi) -> None:
    pod = _name("logs")
    k8s.create_pod(
        pod, command=["sh", "-c", "echo first line; echo to-stderr >&2; exec sleep 3600"]
    )
    out = wait_until(
        lambda: (r := k8s.kubectl("logs", pod)).returncode == 0 and b"to-stderr" in r.stdout and r,
        30,
        "logs to show both lines",
    )
    # Both streams, merged; their relative order is not guaranteed (separate pipes), as
    # with a real kubelet.
    assert sorted(out.stdout.decode().splitlines()) == ["first line", "to-stderr"]
    names = k8s.emulator.docker_names()
    assert f"k8s_default_{pod}_main" in names
    deleted = k8s.kubectl("delete", "pod", pod)
    assert deleted.returncode == 0, deleted.stderr
    assert f'pod "{pod}" deleted' in deleted.stdout.decode()
    gone = k8s.kubectl("get", "pod", pod)
    assert gone.returncode != 0 and b"NotFound" in gone.stderr


def test_kubectl_create_wait_and_multi_container_errors(k8s: K8sApi, tmp_path: Path) -> None:
    pod = _name("created")
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "labels": {"app": "created"}},
        "spec": {"containers": [{"name": "one", "image": "john/devbackend:v1"},
                                {"name": "two", "image": "busybox"}]},
    }  # fmt: skip
    (tmp_path / "pod.json").write_text(json.dumps(manifest))
    created = k8s.kubectl("create", "-f", str(tmp_path / "pod.json"))
    assert created.returncode == 0, created.stderr
    k8s.created.append(("default", pod))
    waited = k8s.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
    assert waited.returncode == 0, waited.stderr
    obj = json.loads(k8s.kubectl("get", "pod", pod, "-o", "json").stdout)
    assert [s["image"] for s in obj["status"]["containerStatuses"]] == [
        "john/devbackend:v1",
        "busybox",
    ]
    out = k8s.kubectl("exec", "-i", pod, "-c", "two", "--", "echo", "hi")
    assert out.stdout == b"hi\n"
    logs = k8s.kubectl("logs", pod)  # kubectl picks the first container itself
    assert logs.returncode == 0 and b'Defaulted container "one" out of: one, two' in logs.stderr
    code, status = k8s.emulator.request("GET", f"/api/v1/namespaces/default/pods/{pod}/log")
    assert code == 400 and "choose one of: [one two]" in status["message"]


def test_unauthorized_without_token(k8s: K8sApi, tmp_path: Path) -> None:
    bad = k8s.emulator.write_kubeconfig(tmp_path / "bad", token="wrong")
    out = k8s.kubectl("get", "pods", env={"KUBECONFIG": str(bad)})
    assert out.returncode != 0
    assert b"Unauthorized" in out.stderr or b"must be logged in" in out.stderr


def test_forced_states_show_in_kubectl(k8s: K8sApi) -> None:
    pod = _name("crash")
    k8s.create_pod(pod, annotations={"emulator.podsync.test/state": "CrashLoopBackOff"}, wait=False)
    row = wait_until(
        lambda: b"CrashLoopBackOff" in (r := k8s.kubectl("get", "pod", pod)).stdout and r,
        30,
        "crash",
    )
    assert row.stdout.decode().splitlines()[1].split()[1:3] == ["0/1", "CrashLoopBackOff"]
    k8s.emulator.resume("default", pod)
    ok = k8s.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
    assert ok.returncode == 0, ok.stderr


def _watch_lines(k8s: K8sApi, query: str, count: int, timeout: float) -> list[dict[str, object]]:
    ctx = ssl.create_default_context(cadata=k8s.emulator.ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", k8s.emulator.port, context=ctx, timeout=timeout)
    conn.request("GET", f"/api/v1/namespaces/default/pods?watch=1&{query}",
                 headers={"Authorization": f"Bearer {k8s.token}"})  # fmt: skip
    resp = conn.getresponse()
    assert resp.status == 200
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            break
        events.append(json.loads(line))
    conn.close()
    return events


def test_watch_stream_reports_lifecycle(k8s: K8sApi) -> None:
    pod = _name("watched")
    code, listing = k8s.emulator.request("GET", "/api/v1/namespaces/default/pods")
    assert code == 200
    rv = listing["metadata"]["resourceVersion"]
    k8s.create_pod(pod, labels={"app": "watched"})
    k8s.delete_pod(pod)
    events = _watch_lines(k8s, f"labelSelector=app%3Dwatched&resourceVersion={rv}", 4, 30)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ADDED" and kinds[-1] == "DELETED" and "MODIFIED" in kinds
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    assert events[1]["object"]["status"]["phase"] == "Running"


def test_kubectl_logs_follow_streams(k8s: K8sApi) -> None:
    pod = _name("follow")
    script = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"
    k8s.create_pod(pod, command=["sh", "-c", script])
    env = {**os.environ, "KUBECONFIG": str(k8s.kubeconfig_path)}
    proc = subprocess.Popen(["kubectl", "logs", "-f", pod], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        logged_so_far = len(k8s.kubectl("logs", pod).stdout.splitlines())
        seen = [first]
        # Lines logged after the snapshot must keep arriving on the open stream.
        while int(seen[-1].split()[1]) < logged_so_far + 5:
            seen.append(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(30)
    numbers = [int(ln.split()[1]) for ln in seen]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_dead_container_is_restarted_like_a_kubelet_would(k8s: K8sApi) -> None:
    pod = _name("restart")
    k8s.create_pod(pod)
    k8s.emulator.restart_container("default", pod, "main")
    obj = k8s.emulator.pod_object("default", pod)
    assert obj is not None
    status = obj["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1 and "running" in status["state"]
    # A container killed behind the emulator's back is restarted too.
    subprocess.run(["docker", "kill", f"k8s_default_{pod}_main"], capture_output=True, check=True)

    def restarted_twice() -> bool:
        o = k8s.emulator.pod_object("default", pod)
        return o is not None and o["status"]["containerStatuses"][0]["restartCount"] == 2

    wait_until(restarted_twice, 30, "second restart")
    wait_until(lambda: is_ready(k8s.emulator.pod_object("default", pod)), 30, "ready again")
    out = k8s.kubectl("get", "pod", pod)
    assert out.stdout.decode().splitlines()[1].split()[1:4] == ["1/1", "Running", "2"]


def test_kubectl_falls_back_to_spdy_when_websocket_is_refused(k8s: K8sApi) -> None:
    """Documents kubectl 1.32: WebSocket (v5 only) first, SPDY/3.1 by POST when refused."""
    pod = _name("spdy")
    k8s.create_pod(pod)
    k8s.emulator.switches.refuse_upgrade_except = ("nobody",)
    mark = len(k8s.emulator.switches.exec_log)
    out = k8s.kubectl("exec", "-i", pod, "--", "true")
    assert out.returncode != 0 and b"Upgrade request required" in out.stderr
    tried = [(offered, chosen) for _, offered, chosen in k8s.emulator.switches.exec_log[mark:]]
    assert tried == [
        ("v5.channel.k8s.io", "<refused GET websocket>"),
        ("", "<refused POST SPDY/3.1>"),
    ]


def test_official_client_watch_sees_deletion(k8s: K8sApi) -> None:
    from kubernetes import client, config, watch

    pod = _name("clientwatch")
    k8s.create_pod(pod, labels={"app": pod})
    api = client.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig_path)))
    listing = api.list_namespaced_pod("default", label_selector=f"app={pod}")
    assert [p.metadata.name for p in listing.items] == [pod]
    assert listing.items[0].status.container_statuses[0].ready is True
    k8s.delete_pod(pod, wait=False)
    seen = []
    for event in watch.Watch().stream(
        api.list_namespaced_pod, "default", label_selector=f"app={pod}",
        resource_version=listing.metadata.resource_version, timeout_seconds=30,
    ):  # fmt: skip
        seen.append(event["type"])
        if event["type"] == "DELETED":
            break
    assert seen[-1] == "DELETED" and "MODIFIED" in seen


def test_official_client_stream_exec_sends_text_frames(k8s: K8sApi) -> None:
    """The Python client's stream() offers v5 then v4 and sends str stdin as text frames;
    the API server (and so the emulator) accepts them."""
    from kubernetes import client, config
    from kubernetes.stream import stream

    pod = _name("clientexec")
    k8s.create_pod(pod)
    api = client.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig_path)))
    resp = stream(api.connect_get_namespaced_pod_exec, pod, "default", command=["cat"],
                  stdin=True, stdout=True, stderr=True, tty=False,
                  _preload_content=False)  # fmt: skip
    resp.write_stdin("hello from the official client\n")
    out = wait_until(lambda: (resp.update(timeout=1), resp.peek_stdout())[1], 30, "echo")
    resp.close()
    assert out == "hello from the official client\n"
    offered, chosen = k8s.emulator.switches.exec_log[-1][1:]
    assert (offered, chosen) == ("v5.channel.k8s.io,v4.channel.k8s.io", "v5.channel.k8s.io")


def test_kubectl_exec_with_a_terminal(k8s: K8sApi) -> None:
    """``kubectl exec -it`` (tty=true): one output stream, terminal size from the client."""
    pod = _name("tty")
    k8s.create_pod(pod)
    master, slave = pty.openpty()
    env = {**os.environ, "KUBECONFIG": str(k8s.kubeconfig_path), "TERM": "dumb"}
    proc = subprocess.Popen(["kubectl", "exec", "-it", pod, "--", "sh"],
                            stdin=slave, stdout=slave, stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    seen = bytearray()

    def read_until(needle: bytes) -> bool:
        while select.select([master], [], [], 0.05)[0]:
            try:
                seen.extend(os.read(master, 65536))
            except OSError:
                break
        return needle in seen

    try:
        os.write(master, b"tty; echo answer=$((6*7)); exit 5\n")
        wait_until(lambda: read_until(b"answer=42"), 60, "the shell's answer")
        assert proc.wait(60) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"/dev/pts/" in seen  # the command really ran on a terminal

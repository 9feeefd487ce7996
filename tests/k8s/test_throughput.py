"""Bulk data through the WebSocket exec path and through ``kubectl exec -i``, same emulator,
same pod: both must carry 16 MiB of random bytes through ``cat`` intact, both ways at once.

How fast each is, is a benchmark, not a test (this machine is shared and noisy):
``python bench/k8s_exec.py`` prints both rates and their ratio.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8s_emulator.fixture import K8sApi
from podsync.transport.kubeconfig import load_api_access
from podsync.transport.kubernetes import KubernetesTransport

pytestmark = pytest.mark.docker

SIZE = 16 << 20


async def _through_websocket(t: KubernetesTransport, data: bytes) -> tuple[float, bytes]:
    ch = await t.spawn(["cat"], lambda line: None)
    out = bytearray()
    start = time.perf_counter()

    async def feed() -> None:
        for at in range(0, len(data), 1 << 20):
            await ch.write(data[at : at + (1 << 20)])
        await ch.close_stdin()

    async def drain() -> None:
        while block := await ch.read(1 << 20):
            out.extend(block)

    await asyncio.gather(feed(), drain())
    elapsed = time.perf_counter() - start
    assert await ch.wait() == 0
    return elapsed, bytes(out)


@pytest.fixture
def separate_api(k8s_api: K8sApi, tmp_path: Path) -> Iterator[Path]:
    """An emulator in its own process (a real API server does not share our GIL)."""
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "k8s_emulator", str(kubeconfig)],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"ready ")
        yield kubeconfig
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(60)


def test_websocket_exec_and_kubectl_carry_bulk_data_intact(
    separate_api: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = f"bench-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("KUBECONFIG", str(separate_api))
    env = {**os.environ, "KUBECONFIG": str(separate_api)}
    run = ["kubectl", "run", pod, "--image=busybox", "--restart=Never"]
    subprocess.run(run, env=env, check=True, capture_output=True)
    subprocess.run(["kubectl", "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=60s"],
                   env=env, check=True, capture_output=True)  # fmt: skip
    access = load_api_access(None, None)
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).digest()

    best_ws, best_kubectl = float("inf"), float("inf")
    for _ in range(1):  # once each: speed is measured by bench/k8s_exec.py
        t = KubernetesTransport(pod, pod, "default", access, mode="websocket")
        elapsed, out = asyncio.run(_through_websocket(t, data))
        assert hashlib.sha256(out).digest() == digest
        best_ws = min(best_ws, elapsed)

        start = time.perf_counter()
        res = subprocess.run(["kubectl", "exec", "-i", pod, "--", "cat"], input=data, env=env,
                             capture_output=True, timeout=300)  # fmt: skip
        best_kubectl = min(best_kubectl, time.perf_counter() - start)
        assert res.returncode == 0 and hashlib.sha256(res.stdout).digest() == digest

    ws_rate, kubectl_rate = SIZE / best_ws / 1e6, SIZE / best_kubectl / 1e6
    with capsys.disabled():
        print(f"\n16 MiB through cat: websocket {ws_rate:.0f} MB/s, ", end="")
        print(f"kubectl exec -i {kubectl_rate:.0f} MB/s")

"""Kubernetes exec throughput: podsync's WebSocket exec path against `kubectl exec -i`, on the
real single-node cluster kit (../shared/k8s), same pod, same payload, alternating.

    python bench/k8s_exec.py [--mib 64] [--rounds 4]

Prints best-of-N MB/s for both and the ratio (WebSocket / kubectl); needs the kit running.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.k8s import kit  # noqa: E402


async def through_websocket(transport: object, data: bytes) -> tuple[float, bytes]:
    channel = await transport.spawn(["cat"], lambda line: None)  # type: ignore[attr-defined]
    out = bytearray()
    start = time.perf_counter()

    async def feed() -> None:
        for at in range(0, len(data), 1 << 20):
            await channel.write(data[at : at + (1 << 20)])
        await channel.close_stdin()

    async def drain() -> None:
        while block := await channel.read(1 << 20):
            out.extend(block)

    await asyncio.gather(feed(), drain())
    elapsed = time.perf_counter() - start
    await channel.wait()
    return elapsed, bytes(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    from podsync.transport.kubeconfig import load_api_access
    from podsync.transport.kubernetes import KubernetesTransport

    reason = kit.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the Kubernetes kit is not available: {reason}")
    work = Path(tempfile.mkdtemp(prefix="podsync-k8s-exec-"))
    kube = kit.open_namespace(work)
    try:
        pod = kube.pod("bench", [kit.container("main", kube.images.busybox)])
        os.environ["KUBECONFIG"] = str(kube.kubeconfig)
        access = load_api_access(None, None)
        size = args.mib << 20
        data = os.urandom(size)
        digest = hashlib.sha256(data).digest()
        best_ws = best_kubectl = float("inf")
        for _ in range(args.rounds):  # alternating: the machine is shared
            transport = KubernetesTransport(pod, "main", kube.namespace, access, mode="websocket")
            elapsed, out = asyncio.run(through_websocket(transport, data))
            assert hashlib.sha256(out).digest() == digest, "websocket path corrupted data"
            best_ws = min(best_ws, elapsed)
            start = time.perf_counter()
            argv = [str(kit.kubectl_path()), "--kubeconfig", str(kube.kubeconfig), "exec", "-i",
                    pod, "--", "cat"]  # fmt: skip
            res = subprocess.run(argv, input=data, capture_output=True, timeout=300)
            best_kubectl = min(best_kubectl, time.perf_counter() - start)
            assert hashlib.sha256(res.stdout).digest() == digest, "kubectl path corrupted data"
        ws, kc = size / best_ws / 1e6, size / best_kubectl / 1e6
        print(f"{args.mib} MiB through cat, best of {args.rounds}:")
        print(f"  podsync WebSocket exec {ws:.0f} MB/s, kubectl exec -i {kc:.0f} MB/s,")
        print(f"  ratio {ws / kc:.2f}x (target >= 1.0x)")
    finally:
        kit.close_namespace(kube)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

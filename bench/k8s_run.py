"""podsync on the real single-node Kubernetes kit (../shared/k8s), every figure next to a floor
measured in the same run (the machine is shared and noisy: compare ratios, not seconds).

    python bench/k8s_run.py [--files 10000] [--mb 120] [--reps 3] [--noops 5] [--saves 100]
                            [--idle 30]

Needs the kit running (``../shared/k8s/up.sh``; its state dir from ``PODSYNC_K8S_STATE_DIR``,
default /tmp/podsync-k8s). The test images are imported as the tests do (tests/k8s/kit.py);
everything runs in a namespace of its own, deleted at the end. Measures:

* initial sync of a generated tree (bench/run.py's generator: 10k files / 125 MB) and of
  Debian's Python stdlib (/usr/lib/python3.11, 1.4k files / 52 MB): ``podsync sync --no-watch``
  into a fresh folder of the pod, against ``tar -c | kubectl exec -i POD -- tar -x`` into
  another fresh folder, alternating, one ratio per repetition;
* no-op re-sync, the whole command (a new process each time), against
  ``kubectl exec POD -- true``;
* save -> visible, p50/p95 both ways, with podsync watching the 10k tree (bench/run.py's probe);
* idle CPU of the agent (a host process: the kit's containers share the host's kernel) and of
  the local podsync process over ``--idle`` seconds, and the local process's RSS.

Prints a table and writes bench/results/k8s-latest.json (every repetition).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import run as docker_bench  # noqa: E402  (bench/run.py: tree generator, probe, percentiles)
from tests.k8s import kit  # noqa: E402

STDLIB = Path("/usr/lib/python3.11")
COMPARED = re.compile(r"already in sync \((\d+) entries compared in (\d+) ms\)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def settle() -> None:
    os.sync()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], **kw: Any) -> tuple[float, str]:
    """Wall seconds and output of ``argv``; its CPU seconds go to ``LAST_CPU`` (a loaded
    machine stretches wall time, CPU time much less)."""
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    elapsed = time.perf_counter() - t0
    LAST_CPU[0] = children_cpu() - cpu0
    out = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed ({done.returncode}):\n{out}")
    return elapsed, out


LAST_CPU = [0.0]


class Bench:
    def __init__(self, kube: kit.Kube, pod: str, work: Path) -> None:
        self.kube = kube
        self.pod = pod
        self.work = work
        self.kubectl = [str(kit.kubectl_path()), "--kubeconfig", str(kube.kubeconfig)]

    def sh(self, script: str) -> None:
        self.kube.sh(self.pod, script)

    def podsync(self, tree: Path, dest: str, *extra: str) -> tuple[float, str]:
        settle()
        argv = [
            sys.executable,
            "-m",
            "podsync",
            "sync",
            "--pod",
            self.pod,
            "--local-path",
            str(tree),
            "--container-path",
            dest,
            "--no-watch",
            *extra,
        ]
        return timed(argv, cwd=self.work, env=self.kube.env)

    def tar_floor(self, tree: Path, dest: str) -> float:
        self.sh(f"mkdir -p {dest}")
        settle()
        t0 = time.perf_counter()
        tar = subprocess.Popen(["tar", "-c", "-C", str(tree), "."], stdout=subprocess.PIPE)
        subprocess.run(
            [*self.kubectl, "exec", "-i", self.pod, "--", "tar", "-x", "-C", dest],
            stdin=tar.stdout,
            check=True,
        )
        tar.wait()
        return time.perf_counter() - t0

    def exec_true(self) -> float:
        return timed([*self.kubectl, "exec", self.pod, "--", "true"])[0]

    def digest(self, dest: str) -> str:
        script = f"cd {dest} && find . -type f | sort | xargs -d '\\n' md5sum | md5sum"
        return self.kube.exec(self.pod, ["sh", "-c", script]).stdout.decode().split()[0]


def initial(bench: Bench, name: str, tree: Path, reps: int) -> list[dict[str, float]]:
    rows = []
    for rep in range(reps):
        floor_dir, sync_dir = f"/bench/{name}-floor{rep}", f"/bench/{name}-sync{rep}"
        order = ["floor", "podsync"] if rep % 2 == 0 else ["podsync", "floor"]
        row: dict[str, float] = {}
        for what in order:
            if what == "floor":
                row["floor_s"] = bench.tar_floor(tree, floor_dir)
            else:
                row["podsync_s"] = bench.podsync(tree, sync_dir)[0]
        if bench.digest(floor_dir) != bench.digest(sync_dir):
            raise SystemExit(f"{name}: podsync's copy differs from tar's")
        row["ratio"] = row["podsync_s"] / row["floor_s"]
        rows.append(row)
        bench.sh(f"rm -rf {floor_dir} {sync_dir}")
        print(
            f"  {name} rep {rep}: tar {row['floor_s']:.2f} s, podsync {row['podsync_s']:.2f} s,"
            f" {row['ratio']:.2f}x",
            flush=True,
        )
    return rows


def noop(bench: Bench, tree: Path, dest: str, reps: int) -> list[dict[str, float]]:
    rows = []
    for _ in range(reps):
        settle()
        floor = bench.exec_true()
        whole, out = bench.podsync(tree, dest)
        cpu = LAST_CPU[0]
        found = COMPARED.search(out)
        if found is None:
            raise SystemExit(f"podsync did not report a no-op re-sync:\n{out}")
        rows.append(
            {
                "exec_true_s": floor,
                "podsync_s": whole,
                "podsync_cpu_s": cpu,
                "compare_ms": float(found[2]),
            }
        )
        print(
            f"  no-op: podsync {whole:.3f} s ({cpu:.2f} s CPU; compare {found[2]} ms),"
            " kubectl exec true"
            f" {floor:.3f} s",
            flush=True,
        )
    return rows


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def agent_pid(dest: str) -> int:
    """The agent serving ``dest``: a process of the host (the kit runs pods on this kernel)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and dest.encode() in argv and any(b".pyz" in a for a in argv):
            return int(entry.name)
    raise SystemExit(f"no agent process serving {dest} found")


def watching(bench: Bench, tree: Path, dest: str, saves: int, idle: float) -> dict[str, Any]:
    """podsync watching ``tree``: save->visible both ways, then idle CPU and RSS."""
    argv = [
        sys.executable,
        "-m",
        "podsync",
        "sync",
        "--pod",
        bench.pod,
        "--local-path",
        str(tree),
        "--container-path",
        dest,
    ]
    env = {**bench.kube.env, "PYTHONUNBUFFERED": "1"}
    sync = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=bench.work
    )
    assert sync.stdout is not None
    for raw in sync.stdout:
        if b"watching for changes" in raw:
            break
    else:
        raise SystemExit("podsync did not start watching")
    drain = subprocess.Popen(["cat"], stdin=sync.stdout, stdout=subprocess.DEVNULL)
    try:
        probe_argv = [
            *bench.kubectl,
            "exec",
            "-i",
            bench.pod,
            "--",
            "python3",
            "-c",
            docker_bench.PROBE,
        ]
        lat = docker_bench.measure_latency(tree, dest, saves, probe_argv)
        agent = agent_pid(dest)
        time.sleep(2)  # let the last saves' echoes settle before measuring idle
        local0, agent0, t0 = cpu_seconds(sync.pid), cpu_seconds(agent), time.monotonic()
        time.sleep(idle)
        local1, agent1, t1 = cpu_seconds(sync.pid), cpu_seconds(agent), time.monotonic()
        span = t1 - t0
        result = {
            "latency_ms": {
                d: {
                    q: docker_bench.pct(s, v) * 1000
                    for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
                }
                for d, s in lat.items()
            },
            "idle_seconds": span,
            "idle_cpu_local_pct": 100 * (local1 - local0) / span,
            "idle_cpu_agent_pct": 100 * (agent1 - agent0) / span,
            "local_rss_mb": rss_mb(sync.pid),
            "local_peak_rss_mb": rss_mb(sync.pid, "VmHWM"),
        }
    finally:
        sync.send_signal(signal.SIGINT)
        sync.wait(60)
        drain.wait(10)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--mb", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--noops", type=int, default=5)
    ap.add_argument("--saves", type=int, default=100)
    ap.add_argument("--idle", type=float, default=30.0)
    args = ap.parse_args()
    reason = kit.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the Kubernetes kit is not available: {reason}")

    # SIGTERM (a timeout) still deletes the namespace and the trees (the finally below); a
    # second one (timeout(1) forwards its own) must not cut that cleanup short.
    def on_term(*_: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit("terminated")

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="podsync-k8s-bench-"))
    kube = kit.open_namespace(work)
    results: dict[str, Any] = {
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": os.getloadavg(),
    }
    try:
        pod = kube.pod("bench", [kit.container("main", kube.images.py)])
        bench = Bench(kube, pod, work)
        tree = work / "webapp"
        tree.mkdir()
        nbytes = docker_bench.make_tree(tree, args.files, args.mb)
        stdlib = work / "stdlib"
        shutil.copytree(STDLIB, stdlib, symlinks=True)
        warm = work / "warm"
        warm.mkdir()
        (warm / "f").write_text("x")
        bench.podsync(warm, "/bench/warm")  # installs the agent once, as any first run does
        results["tree"] = {"files": args.files, "bytes": nbytes}
        print(f"initial sync, {args.files} files / {nbytes / 1e6:.0f} MB:", flush=True)
        results["initial_webapp"] = initial(bench, "webapp", tree, args.reps)
        print("initial sync, Debian's python3.11 stdlib:", flush=True)
        results["initial_stdlib"] = initial(bench, "stdlib", stdlib, args.reps)
        bench.podsync(tree, "/bench/noop")
        print("no-op re-sync of the 10k tree:", flush=True)
        results["noop"] = noop(bench, tree, "/bench/noop", args.noops)
        print("watching the 10k tree:", flush=True)
        results.update(watching(bench, tree, "/bench/noop", args.saves, args.idle))
        results["load_after"] = os.getloadavg()
    finally:
        kit.close_namespace(kube)
        shutil.rmtree(work, ignore_errors=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "k8s-latest.json").write_text(json.dumps(results, indent=2))
    report(results)


def report(r: dict[str, Any]) -> None:
    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    print(f"\ncommit {r['commit']}, {r['started']}, load {r['load_before'][0]:.1f}")
    for name in ("webapp", "stdlib"):
        rows = r[f"initial_{name}"]
        ratios = ", ".join(f"{row['ratio']:.2f}" for row in rows)
        print(
            f"initial {name}: podsync {med(rows, 'podsync_s'):.2f} s, tar floor"
            f" {med(rows, 'floor_s'):.2f} s; ratios {ratios} (median {med(rows, 'ratio'):.2f}x)"
        )
    rows = r["noop"]
    print(
        f"no-op re-sync (whole command): median {med(rows, 'podsync_s'):.3f} s,"
        f" {med(rows, 'podsync_cpu_s'):.2f} s CPU"
        f" (compare {med(rows, 'compare_ms'):.0f} ms); kubectl exec true median"
        f" {med(rows, 'exec_true_s'):.3f} s"
    )
    for d, qs in r["latency_ms"].items():
        print(
            f"save->visible {d}: p50 {qs['p50']:.1f} ms, p95 {qs['p95']:.1f} ms,"
            f" p99 {qs['p99']:.1f} ms"
        )
    print(
        f"idle {r['idle_seconds']:.0f} s: agent {r['idle_cpu_agent_pct']:.3f} %, local"
        f" {r['idle_cpu_local_pct']:.3f} % of a core; local RSS {r['local_rss_mb']:.0f} MB"
        f" (peak {r['local_peak_rss_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()

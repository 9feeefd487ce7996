"""Initial sync on the Kubernetes kit, A/B: the tar floor and podsync from several source
trees (e.g. main's and a branch's), alternating within each repetition so that every ratio is
to a floor of the same minute (the machine is shared: compare ratios, not seconds).

    python bench/k8s_ab.py --reps 3 /work/main/src src

Each podsync runs with ``PYTHONPATH`` set to the given source tree (and so installs that
tree's agent). Copies are checked against tar's by a content digest in the pod.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import k8s_run as kr  # noqa: E402
import run as docker_bench  # noqa: E402
from tests.k8s import kit  # noqa: E402

PATH_COMMANDS = {"kube-apiserver", "kubelet", "containerd", "containerd-shim"}
PODS_CPU = Path("/sys/fs/cgroup/cpuacct/k8s.io/cpuacct.usage")


def path_cpu() -> float:
    """CPU seconds spent so far along the whole path, which a loaded machine stretches far
    less than wall time: this process's children (tar or podsync, kubectl), the API server,
    kubelet and containerd (they carry the exec stream), and every container of the kit."""
    total = kr.children_cpu()
    with contextlib.suppress(OSError):
        total += int(PODS_CPU.read_text()) / 1e9
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            if name in PATH_COMMANDS:
                fields = raw[raw.rindex(")") + 2 :].split()
                total += (int(fields[11]) + int(fields[12])) / kr.CLK_TCK
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--mb", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("sources", nargs="+")
    args = ap.parse_args()
    reason = kit.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the Kubernetes kit is not available: {reason}")
    sources = [str(Path(s).resolve()) for s in args.sources]
    work = Path(tempfile.mkdtemp(prefix="podsync-k8s-ab-"))
    kube = kit.open_namespace(work)
    try:
        pod = kube.pod("bench", [kit.container("main", kube.images.py)])
        bench = kr.Bench(kube, pod, work)
        tree = work / "webapp"
        tree.mkdir()
        nbytes = docker_bench.make_tree(tree, args.files, args.mb)
        print(f"{args.files} files / {nbytes / 1e6:.0f} MB", flush=True)
        warm = work / "warm"
        warm.mkdir()
        (warm / "f").write_text("x")
        for i, src in enumerate(sources):  # each tree's agent installed once, untimed
            os.environ["PYTHONPATH"] = src
            bench.podsync(warm, f"/bench/warm{i}")
        rows: dict[str, list[float]] = {src: [] for src in sources}
        cpu_rows: dict[str, list[float]] = {src: [] for src in sources}
        for rep in range(args.reps):
            # Rotate the order (floor included) every repetition: whoever runs first or last
            # in a minute of this shared machine must not always be the same.
            order = ["tar", *sources]
            order = order[rep % len(order) :] + order[: rep % len(order)]
            took: dict[str, float] = {}
            floor_dir = f"/bench/floor{rep}"
            cpu: dict[str, float] = {}
            for what in order:
                before = path_cpu()
                if what == "tar":
                    took["tar"] = bench.tar_floor(tree, floor_dir)
                else:
                    os.environ["PYTHONPATH"] = what  # kube.env is built from os.environ
                    dest = f"/bench/sync{rep}-{sources.index(what)}"
                    took[what] = bench.podsync(tree, dest)[0]
                cpu[what] = path_cpu() - before
            want = bench.digest(floor_dir)
            for i, src in enumerate(sources):
                if bench.digest(f"/bench/sync{rep}-{i}") != want:
                    raise SystemExit(f"{src}: podsync's copy differs from tar's")
            bench.sh("rm -rf /bench/floor* /bench/sync*")
            line = (
                f"rep {rep} load {os.getloadavg()[0]:.1f}: tar {took['tar']:.2f} s"
                f" (cpu {cpu['tar']:.2f} s)"
            )
            for src in sources:
                rows[src].append(took[src] / took["tar"])
                cpu_rows[src].append(cpu[src] / cpu["tar"])
                line += (
                    f" | {src}: {took[src]:.2f} s {took[src] / took['tar']:.2f}x"
                    f" (cpu {cpu[src]:.2f} s {cpu[src] / cpu['tar']:.2f}x)"
                )
            print(line, time.strftime("%H:%M:%S"), flush=True)
        for src in sources:
            print(
                f"{src}: median {statistics.median(rows[src]):.2f}x wall,"
                f" {statistics.median(cpu_rows[src]):.2f}x cpu, of {len(rows[src])}"
            )
    finally:
        kit.close_namespace(kube)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

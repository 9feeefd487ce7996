"""Initial sync on the Kubernetes kit, A/B: the tar floor and podsync from several source
trees (e.g. main's and a branch's), alternating within each repetition so that every ratio is
to a floor of the same minute (the machine is shared: compare ratios, not seconds).

    python bench/k8s_ab.py --reps 3 /work/main/src src

Each podsync runs with ``PYTHONPATH`` set to the given source tree (and so installs that
tree's agent). Copies are checked against tar's by a content digest in the pod.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import k8s_run as kr  # noqa: E402
import run as docker_bench  # noqa: E402
from tests.k8s import kit  # noqa: E402


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
            os.environ["PYTHONPATH"] = src  # kube.env is built from os.environ
            bench.podsync(warm, f"/bench/warm{i}")
        for rep in range(args.reps):
            floor_dir = f"/bench/floor{rep}"
            floor = bench.tar_floor(tree, floor_dir)
            want = bench.digest(floor_dir)
            line = f"rep {rep} load {os.getloadavg()[0]:.1f}: tar {floor:.2f} s"
            for i, src in enumerate(sources):
                os.environ["PYTHONPATH"] = src
                dest = f"/bench/sync{rep}-{i}"
                took = bench.podsync(tree, dest)[0]
                if bench.digest(dest) != want:
                    raise SystemExit(f"{src}: podsync's copy differs from tar's")
                line += f" | {src}: {took:.2f} s {took / floor:.2f}x"
                bench.sh(f"rm -rf {dest}")
            bench.sh(f"rm -rf {floor_dir}")
            print(line, time.strftime("%H:%M:%S"), flush=True)
    finally:
        kit.close_namespace(kube)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

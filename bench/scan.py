"""In-process scan benchmark: ``Replica.scan`` of a generated tree against a bare walk floor.

Owns: nothing shipped. Run from a checkout (``PYTHONPATH=src python bench/scan.py``); it builds
a tree of ``--files`` files (``src/pkgN/modM/fileK.py``, ~600 directories, plus a share of
non-ASCII and non-UTF-8 names with ``--odd``), then times, best of ``--reps``:

- the floor: a plain ``os.scandir`` walk through directory fds that lstat()s every regular
  file (what any scanner must at least do), and
- ``Replica(root).scan()`` (name checks, Entry building, exclusion hook, the root re-check).

Times are CPU time of this process (user + system, ``time.process_time``): on a shared,
loaded machine wall time mostly measures the other tenants. Prints both in ms and their
ratio (compare ratios, not absolute figures).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from podsync.replica import Replica


def make_tree(root: Path, files: int, odd: float) -> None:
    every = int(1 / odd) if odd > 0 else 0
    for i in range(files):
        d = root / f"src/pkg{i % 40}/mod{i % 13}"
        d.mkdir(parents=True, exist_ok=True)
        if every and i % every == 0:
            raw = (
                os.fsencode(d)
                + b"/"
                + (b"caf\xc3\xa9-%d" if (i // every) % 2 else b"bad\xff-%d") % i
            )
            with open(raw, "wb") as f:
                f.write(b"x")
        else:
            (d / f"file{i}.py").write_bytes(b"x")


def floor(root: str) -> int:
    count = 0
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    while stack:
        fd = stack.pop()
        with os.scandir(fd) as it:
            entries = list(it)
        for de in entries:
            if de.is_dir(follow_symlinks=False):
                stack.append(os.open(de.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd))
            elif de.is_file(follow_symlinks=False):
                de.stat(follow_symlinks=False)
            count += 1
        os.close(fd)
    return count


def best(fn: object, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.process_time() - started)
    return min(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--odd", type=float, default=0.0, help="share of non-ASCII names (0-1)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_tree(Path(tmp), args.files, args.odd)
        replica = Replica(tmp)
        entries = len(replica.scan())
        walk_ms = best(lambda: floor(tmp), args.reps)
        scan_ms = best(replica.scan, args.reps)
    print(
        f"{entries} entries: floor walk {walk_ms:.1f} ms, Replica.scan {scan_ms:.1f} ms "
        f"(best of {args.reps}), ratio {scan_ms / walk_ms:.2f}x"
    )


if __name__ == "__main__":
    main()

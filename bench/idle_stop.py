"""How long Ctrl-C takes while podsync watches an idle tree: SIGINT -> process exit, for the
python agent and the shell agent, each in a fresh container (no network).

    python bench/idle_stop.py [--reps 5] [--idle 2]

The floor, measured in the same run: SIGINT -> exit of a ``docker exec C sleep 600`` client
(what ending one exec session costs on this machine). The target: well under 2 s. Needs a
Docker engine and the test images ``podsync-test-py`` and ``podsync-test-busybox``
(``bash tests/images/build.sh``).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

IMAGES = {"python agent": "podsync-test-py:latest", "shell agent": "podsync-test-busybox:latest"}
SRC = Path(__file__).resolve().parents[1] / "src"


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def stop_time(argv: list[str], ready: bytes, idle: float, cwd: str) -> float:
    """Start ``argv``, wait for ``ready`` on its output (if any), stay idle, SIGINT it."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
    out = subprocess.PIPE
    proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while ready and ready not in seen:
        chunk = proc.stdout.read1(4096)
        if not chunk or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"never ready: {seen.decode(errors='replace')}")
        seen += chunk
    time.sleep(idle)  # idle watching: what the figure is about
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before SIGINT")
    args = parser.parse_args()
    for label, image in IMAGES.items():
        name = f"podsync-bench-{uuid.uuid4().hex[:8]}"
        docker("run", "-d", "--rm", "--network", "none", "--name", name, image, "sleep", "3600")
        try:
            podsync, floor = [], []
            for _ in range(args.reps):
                with tempfile.TemporaryDirectory() as work:
                    Path(work, "a.txt").write_text("a")
                    argv = [sys.executable, "-m", "podsync", "sync", "--local-path", work]
                    podsync.append(
                        stop_time([*argv, "--docker", name], b"watching", args.idle, work)
                    )
                    exec_argv = ["docker", "exec", name, "sleep", "600"]
                    floor.append(stop_time(exec_argv, b"", args.idle, work))
            shown = ", ".join(f"{s:.2f}" for s in podsync)
            print(
                f"{label}: SIGINT -> exit {shown} s (median {statistics.median(podsync):.2f} s);"
                f" floor docker exec client median {statistics.median(floor):.2f} s"
            )
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


if __name__ == "__main__":
    main()

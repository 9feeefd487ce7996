"""Run the emulator as its own process: ``python -m k8s_emulator KUBECONFIG_PATH``.

Writes the kubeconfig, prints ``ready <url>`` on stdout, and serves until stdin closes (then
removes its containers). Benchmarks use it so the API server does not share a GIL with the
client under test, as a real one would not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .fixture import start_k8s_api


def main() -> None:
    path = Path(sys.argv[1])
    api = start_k8s_api(path.parent)
    if api.kubeconfig_path != path:
        api.kubeconfig_path.replace(path)
    print(f"ready {api.emulator.url}", flush=True)
    try:
        sys.stdin.read()
    finally:
        api.emulator.stop()


if __name__ == "__main__":
    main()

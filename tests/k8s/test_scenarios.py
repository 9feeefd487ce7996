"""The spec's sync examples, each a scenario folder with its devspace.yaml, run through the
real `podsync dev` / `podsync sync` against the Kubernetes API emulator (which stands in for
an API server; real containers behind it, real kubectl works against it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from k8s_emulator.fixture import K8sApi

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.wait import wait_until

SCENARIOS = Path(__file__).parent / "scenarios"
LABELS = {
    "app.kubernetes.io/name": "devspace-app",
    "app.kubernetes.io/component": "app-backend",
    "custom-label": "custom-label-value",
}
TWO = (("container-0", "john/devbackend"), ("container-1", "busybox"))

pytestmark = pytest.mark.docker


class Podsync:
    """A `podsync ARGS` process with KUBECONFIG pointing at the emulator."""

    def __init__(self, k8s: K8sApi, cwd: Path, *args: str, wait: float = 60) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(k8s.kubeconfig_path),
            "PYTHONUNBUFFERED": "1",
            "PODSYNC_POD_WAIT_SECONDS": str(wait),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "podsync", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 60, count: int = 1) -> None:
        wait_until(
            lambda: self.output.count(needle) >= count or self.proc.poll() is not None,
            timeout,
            message=f"{needle!r} not printed:\n{self.output}",
        )
        assert self.output.count(needle) >= count, f"exited {self.proc.returncode}:\n{self.output}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
        return self.proc.returncode


@pytest.fixture
def run(k8s: K8sApi):  # type: ignore[no-untyped-def]
    started: list[Podsync] = []

    def start(cwd: Path, *args: str, wait: float = 60) -> Podsync:
        proc = Podsync(k8s, cwd, *args, wait=wait)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def scenario(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(SCENARIOS / name, dest)
    return dest


def cat(k8s: K8sApi, pod: str, container: str, path: str) -> bytes | None:
    result = k8s.kubectl("exec", pod, "-c", container, "--", "cat", path)
    return result.stdout if result.returncode == 0 else None


def test_image_name_two_containers_two_entries_and_logs(k8s: K8sApi, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = scenario("image-two-containers", tmp_path)
    k8s.create_pod(
        "backend-1",
        {"app": "backend"},
        TWO,
        command=["sh", "-c", "echo backend says hello; exec sleep 100000"],
    )
    dev = run(project, "dev")
    dev.wait_for("watching for changes", count=2)
    # Entry 1: the project root -> container-0's WORKDIR, excludes honoured.
    assert cat(k8s, "backend-1", "container-0", "/app/src/main.py") == b"print('backend')\n"
    assert cat(k8s, "backend-1", "container-0", "/app/logs/local.log") is None
    assert cat(k8s, "backend-1", "container-0", "/app/node_modules/x/index.js") is None
    # Entry 2: ./debug-logs -> container-1:/logs, through the shell agent (no python3 there).
    assert cat(k8s, "backend-1", "container-1", "/logs/debug.txt") == b"debug\n"
    assert "shell agent" in dev.output
    # Logs of the selected containers are streamed, prefixed by pod:container.
    dev.wait_for("[backend-1:container-0] backend says hello")
    # Continuous sync both ways.
    (project / "src" / "main.py").write_text("print('edited')\n")
    wait_until(
        lambda: cat(k8s, "backend-1", "container-0", "/app/src/main.py") == b"print('edited')\n",
        15,
        message="local edit not in the pod",
    )
    k8s.kubectl(
        "exec", "backend-1", "-c", "container-1", "--", "sh", "-c", "echo new > /logs/n.txt"
    )
    wait_until(
        lambda: (project / "debug-logs" / "n.txt").exists(), 15, message="pod edit not local"
    )
    assert dev.stop() == 0, dev.output


def test_label_selector_with_container_name(k8s: K8sApi, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = scenario("label-container", tmp_path)
    k8s.create_pod("labelled", LABELS, TWO)
    dev = run(project, "dev")
    dev.wait_for("watching for changes")
    assert cat(k8s, "labelled", "container-0", "/app/src/app.py") == b"x = 1\n"
    assert cat(k8s, "labelled", "container-0", "/app/src/outside.txt") is None
    assert cat(k8s, "labelled", "container-1", "/app/src/app.py") is None


def test_excludes_in_all_three_lists(k8s: K8sApi, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = scenario("excludes", tmp_path)
    k8s.create_pod("ex", {"app": "ex"}, (("main", "john/devbackend"),))
    for path in ("logs/r.log", "node_modules/r.js", "tmp/r.tmp"):
        k8s.kubectl(
            "exec",
            "ex",
            "--",
            "sh",
            "-c",
            f"mkdir -p /app/{os.path.dirname(path)} && echo remote > /app/{path}",
        )
    dev = run(project, "dev")
    dev.wait_for("watching for changes")
    assert cat(k8s, "ex", "main", "/app/keep.txt") == b"keep.txt\n"
    assert cat(k8s, "ex", "main", "/app/logs/a.log") is None
    assert cat(k8s, "ex", "main", "/app/more/logs/b.log") is None
    assert cat(k8s, "ex", "main", "/app/logs/r.log") == b"remote\n"  # excluded: kept
    assert cat(k8s, "ex", "main", "/app/node_modules/m.js") is None  # never uploaded
    assert cat(k8s, "ex", "main", "/app/node_modules/r.js") == b"remote\n"  # kept
    assert cat(k8s, "ex", "main", "/app/tmp/t.txt") == b"tmp/t.txt\n"  # uploaded
    assert cat(k8s, "ex", "main", "/app/tmp/r.tmp") is None  # remote-only: deleted
    # Watch phase: node_modules flows down only, tmp up only.
    k8s.kubectl("exec", "ex", "--", "sh", "-c", "echo down > /app/node_modules/late.js")
    wait_until(lambda: (project / "node_modules" / "late.js").exists(), 15, message="download")
    k8s.kubectl("exec", "ex", "--", "sh", "-c", "echo up > /app/tmp/late.tmp")
    (project / "tmp" / "marker.txt").write_text("m")
    wait_until(lambda: cat(k8s, "ex", "main", "/app/tmp/marker.txt") == b"m", 15, message="up")
    assert not (project / "tmp" / "late.tmp").exists()


def test_download_on_initial_sync_for_node_modules(k8s: K8sApi, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = scenario("node-modules", tmp_path)
    k8s.create_pod("nm", {"app": "nm"}, (("main", "john/devbackend"),))
    k8s.kubectl(
        "exec",
        "nm",
        "--",
        "sh",
        "-c",
        "mkdir -p /app/node_modules/lib && echo lib > /app/node_modules/lib/i.js"
        " && echo stale > /app/stale.txt",
    )
    dev = run(project, "dev")
    dev.wait_for("watching for changes", count=2)
    assert (project / "node_modules" / "lib" / "i.js").read_text() == "lib\n"
    assert cat(k8s, "nm", "main", "/app/index.js") == b"console.log(1)\n"
    assert cat(k8s, "nm", "main", "/app/stale.txt") is None  # first entry: remote-only deleted
    assert cat(k8s, "nm", "main", "/app/node_modules/lib/i.js") == b"lib\n"


def test_wait_initial_sync_holds_logs_back(k8s: K8sApi, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = scenario("wait-initial", tmp_path)
    (project / "big").mkdir()
    for i in range(300):
        (project / "big" / f"f{i}.txt").write_text("x" * 5000)
    k8s.create_pod(
        "w",
        {"app": "w"},
        (("main", "john/devbackend"),),
        command=["sh", "-c", "echo LOGLINE; exec sleep 100000"],
    )
    dev = run(project, "dev")
    dev.wait_for("LOGLINE")
    text = dev.output
    assert text.index("initial sync:") < text.index("LOGLINE")


def test_bandwidth_limits_entry_runs(k8s: K8sApi, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = scenario("bandwidth", tmp_path)
    k8s.create_pod("bw", {"app": "bw"}, (("main", "john/devbackend"),))
    dev = run(project, "dev")
    dev.wait_for("watching for changes")
    assert cat(k8s, "bw", "main", "/app/app.txt") == b"small\n"


def test_sync_command_follows_a_replaced_pod_without_losing_a_local_edit(
    k8s: K8sApi,
    run,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "a.txt").write_text("one")
    k8s.create_pod("web-1", {"app": "web"}, (("main", "john/devbackend"),))
    sync = run(project, "sync", "--label-selector", "app=web", "--container-path", "/app")
    sync.wait_for("watching for changes")
    assert cat(k8s, "web-1", "main", "/app/a.txt") == b"one"
    k8s.delete_pod("web-1")
    (project / "b.txt").write_text("edited during the gap")
    k8s.create_pod("web-2", {"app": "web"}, (("main", "john/devbackend"),))
    wait_until(
        lambda: cat(k8s, "web-2", "main", "/app/b.txt") == b"edited during the gap",
        60,
        message=f"edit made during the gap not uploaded to the new pod:\n{sync.output}",
    )
    assert cat(k8s, "web-2", "main", "/app/a.txt") == b"one"
    assert (project / "a.txt").read_text() == "one"


@pytest.mark.parametrize(
    ("pods", "args", "message"),
    [
        ([], ["--label-selector", "app=none"], "no pod"),
        ([("two", {"app": "two"}, TWO)], ["--label-selector", "app=two"], "container-0"),
    ],
)
def test_selector_errors(k8s: K8sApi, run, tmp_path: Path, pods, args, message) -> None:  # type: ignore[no-untyped-def]
    for name, labels, containers in pods:
        k8s.create_pod(name, labels, containers)
    sync = run(tmp_path, "sync", *args, "--no-watch", wait=3)
    assert sync.proc.wait(60) == 1, sync.output
    assert message in sync.output.lower() or message in sync.output
    assert "Traceback" not in sync.output


def test_pick_without_a_terminal_lists_the_candidates(k8s: K8sApi, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("pick-a", "pick-b"):
        k8s.create_pod(name, {"app": "pick"}, (("main", "john/devbackend"),))
    sync = run(tmp_path, "sync", "--label-selector", "app=pick", "--pick", "--no-watch")
    assert sync.proc.wait(60) == 1, sync.output
    assert "pick-a:main" in sync.output and "pick-b:main" in sync.output
    assert "Traceback" not in sync.output

"""The spec's sync examples on the real cluster kit: each a scenario folder with its
devspace.yaml, run through the real `podsync dev` / `podsync sync`, against real pods (bare
ones, and the pods of a Deployment), checked with the real kubectl.

Each test gets its own namespace: ``imageName`` selection looks at every pod of the
namespace, so another test's pods must not be there. The scenario files are the spec's
examples as written; the pods run the test images under the names the examples use
(john/devbackend, busybox: see tests/k8s/kit.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.k8s.kit import Kube, Podsync, container
from tests.support.wait import wait_until

SCENARIOS = Path(__file__).parent / "scenarios"
LABELS = {
    "app.kubernetes.io/name": "devspace-app",
    "app.kubernetes.io/component": "app-backend",
    "custom-label": "custom-label-value",
}

pytestmark = pytest.mark.k8s


Run = Callable[..., Podsync]


@pytest.fixture
def run(space: Kube) -> Iterator[Run]:
    started: list[Podsync] = []

    def start(cwd: Path, *args: str, wait: float = 60) -> Podsync:
        proc = Podsync(space, cwd, *args, wait=wait)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def scenario(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(SCENARIOS / name, dest)
    return dest


def backend(kube: Kube, name: str = "main", command: list[str] | None = None) -> dict[str, object]:
    """A container running the spec's john/devbackend image (python3, WORKDIR /app)."""
    return container(name, kube.images.aliases["john/devbackend"], command)


def test_image_name_two_containers_two_entries_and_logs(
    space: Kube, run: Run, tmp_path: Path
) -> None:
    project = scenario("image-two-containers", tmp_path)
    hello = ["sh", "-c", "echo backend says hello; exec sleep 100000"]
    space.pod("backend-1", [
        backend(space, "container-0", hello),
        container("container-1", space.images.aliases["busybox"], ["sleep", "100000"]),
    ], labels={"app": "backend"})  # fmt: skip
    dev = run(project, "dev")
    dev.wait_for("watching for changes", count=2)
    # Entry 1: the project root -> container-0's WORKDIR, excludes honoured.
    assert space.cat("backend-1", "/app/src/main.py", "container-0") == b"print('backend')\n"
    assert space.cat("backend-1", "/app/logs/local.log", "container-0") is None
    assert space.cat("backend-1", "/app/node_modules/x/index.js", "container-0") is None
    # Entry 2: ./debug-logs -> container-1:/logs, through the shell agent (no python3 there).
    assert space.cat("backend-1", "/logs/debug.txt", "container-1") == b"debug\n"
    assert "shell agent" in dev.output
    # Logs of the selected containers are streamed, prefixed by pod:container.
    dev.wait_for("[backend-1:container-0] backend says hello")
    # Continuous sync both ways.
    (project / "src" / "main.py").write_text("print('edited')\n")
    wait_until(
        lambda: space.cat("backend-1", "/app/src/main.py", "container-0") == b"print('edited')\n",
        30,
        message="local edit not in the pod",
    )
    space.sh("backend-1", "echo new > /logs/n.txt", "container-1")
    wait_until(lambda: (project / "debug-logs" / "n.txt").exists(), 30, message="pod edit")
    assert dev.stop() == 0, dev.output


def test_label_selector_with_container_name(space: Kube, run: Run, tmp_path: Path) -> None:
    project = scenario("label-container", tmp_path)
    space.pod("labelled", [
        backend(space, "container-0"),
        container("container-1", space.images.aliases["john/debugger"]),
    ], labels=LABELS)  # fmt: skip
    dev = run(project, "dev")
    dev.wait_for("watching for changes")
    assert space.cat("labelled", "/app/src/app.py", "container-0") == b"x = 1\n"
    assert space.cat("labelled", "/app/src/outside.txt", "container-0") is None
    assert space.cat("labelled", "/app/src/app.py", "container-1") is None


def test_excludes_in_all_three_lists(space: Kube, run: Run, tmp_path: Path) -> None:
    project = scenario("excludes", tmp_path)
    space.pod("ex", [backend(space)])
    space.sh("ex", "cd /app && mkdir -p logs node_modules tmp && echo remote > logs/r.log"
             " && echo remote > node_modules/r.js && echo remote > tmp/r.tmp")  # fmt: skip
    dev = run(project, "dev")
    dev.wait_for("watching for changes")
    assert space.cat("ex", "/app/keep.txt") == b"keep.txt\n"
    assert space.cat("ex", "/app/logs/a.log") is None
    assert space.cat("ex", "/app/more/logs/b.log") is None
    assert space.cat("ex", "/app/logs/r.log") == b"remote\n"  # excluded: kept
    assert space.cat("ex", "/app/node_modules/m.js") is None  # never uploaded
    assert space.cat("ex", "/app/node_modules/r.js") == b"remote\n"  # kept
    assert space.cat("ex", "/app/tmp/t.txt") == b"tmp/t.txt\n"  # uploaded
    assert space.cat("ex", "/app/tmp/r.tmp") is None  # remote-only: deleted
    # Watch phase: node_modules flows down only, tmp up only.
    space.sh("ex", "echo down > /app/node_modules/late.js")
    wait_until(lambda: (project / "node_modules" / "late.js").exists(), 30, message="download")
    space.sh("ex", "echo up > /app/tmp/late.tmp")
    (project / "tmp" / "marker.txt").write_text("m")
    wait_until(lambda: space.cat("ex", "/app/tmp/marker.txt") == b"m", 30, message="upload")
    assert not (project / "tmp" / "late.tmp").exists()


def test_download_on_initial_sync_for_node_modules(space: Kube, run: Run, tmp_path: Path) -> None:
    project = scenario("node-modules", tmp_path)
    space.pod("nm", [backend(space)])
    space.sh("nm", "mkdir -p /app/node_modules/lib && echo lib > /app/node_modules/lib/i.js"
             " && echo stale > /app/stale.txt")  # fmt: skip
    dev = run(project, "dev")
    dev.wait_for("watching for changes", count=2)
    assert (project / "node_modules" / "lib" / "i.js").read_text() == "lib\n"
    assert space.cat("nm", "/app/index.js") == b"console.log(1)\n"
    assert space.cat("nm", "/app/stale.txt") is None  # first entry: remote-only deleted
    assert space.cat("nm", "/app/node_modules/lib/i.js") == b"lib\n"


def test_wait_initial_sync_holds_logs_back(space: Kube, run: Run, tmp_path: Path) -> None:
    project = scenario("wait-initial", tmp_path)
    (project / "big").mkdir()
    for i in range(300):
        (project / "big" / f"f{i}.txt").write_text("x" * 5000)
    space.pod("w", [backend(space, command=["sh", "-c", "echo LOGLINE; exec sleep 100000"])])
    dev = run(project, "dev")
    dev.wait_for("LOGLINE")
    text = dev.output
    assert text.index("initial sync:") < text.index("LOGLINE")
    assert space.cat("w", "/app/big/f299.txt") == b"x" * 5000


def test_bandwidth_limits_entry_runs(space: Kube, run: Run, tmp_path: Path) -> None:
    project = scenario("bandwidth", tmp_path)
    space.pod("bw", [backend(space)])
    dev = run(project, "dev")
    dev.wait_for("watching for changes")
    assert space.cat("bw", "/app/app.txt") == b"small\n"


def test_deployment_pod_replaced_sync_follows_and_keeps_a_gap_edit(
    space: Kube, run: Run, tmp_path: Path
) -> None:
    """`kubectl delete pod` of a Deployment's pod gives a new pod with a new name: the sync
    reconnects to it, and a local edit made meanwhile lands there; nothing is lost locally."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "a.txt").write_text("one")
    space.deployment("web", {"app": "web"})
    (first,) = space.ready_pods("app=web")
    sync = run(project, "sync", "--label-selector", "app=web", "--container-path", "/app")
    sync.wait_for("watching for changes")
    assert space.cat(first, "/app/a.txt") == b"one"
    space.sh(first, "echo from-pod > /app/pod.txt")
    wait_until(lambda: (project / "pod.txt").exists(), 30, message="pod edit not local")
    space.delete_pod(first, wait=False)
    (project / "b.txt").write_text("edited during the gap")

    def replacement() -> str | None:
        names = [n for n in space.ready_pods("app=web") if n != first]
        return names[0] if names else None

    wait_until(replacement, 120, message="the Deployment made no new pod")
    second = replacement()
    assert second is not None and second != first
    wait_until(
        lambda: space.cat(second, "/app/b.txt") == b"edited during the gap",
        120,
        message=f"edit made during the gap not uploaded to the new pod:\n{sync.output}",
    )
    assert space.cat(second, "/app/a.txt") == b"one"
    assert space.cat(second, "/app/pod.txt") == b"from-pod\n"  # re-uploaded: local authority
    assert (project / "a.txt").read_text() == "one"
    assert (project / "b.txt").read_text() == "edited during the gap"
    assert (project / "pod.txt").read_text() == "from-pod\n"
    assert f"{space.namespace}/{second}:main" in sync.output
    # The sync goes on with the new pod, both ways.
    space.sh(second, "echo later > /app/later.txt")
    wait_until(lambda: (project / "later.txt").exists(), 30, message="new pod's edit not local")
    assert sync.stop() == 0, sync.output


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("none", ["--label-selector", "app=none"], "no pod matches"),
        ("two", ["--label-selector", "app=two"], "container-0, container-1"),
    ],
)
def test_selector_errors(
    space: Kube, run: Run, tmp_path: Path, make: str, args: list[str], message: str
) -> None:
    if make == "two":
        space.pod("two", [backend(space, "container-0"), backend(space, "container-1")],
                  labels={"app": "two"})  # fmt: skip
    sync = run(tmp_path, "sync", *args, "--no-watch", wait=3)
    assert sync.proc.wait(60) == 1, sync.output
    assert message in sync.output
    assert "Traceback" not in sync.output

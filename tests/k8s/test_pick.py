"""``podsync sync --pick`` on the real cluster: on a real terminal (tmux: send-keys,
capture-pane) the picker offers every container of the pod, or every pod and container of the
namespace when no selector is given, as DevSpace's --pick does; without a terminal, one line
lists the candidates."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.k8s.kit import Kube, Podsync, container
from tests.support.wait import wait_until

pytestmark = pytest.mark.k8s
QUESTION = "Which container should podsync sync with?"


def two_pods(kube: Kube) -> None:
    """``py`` with containers main and helper (python image), ``other`` with one (busybox)."""
    kube.pod("py", [container("main", kube.images.py), container("helper", kube.images.py)])
    kube.pod("other", [container("main", kube.images.busybox)])


def podsync(kube: Kube, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podsync", *args],
        cwd=cwd, env={**kube.env, "PODSYNC_POD_WAIT_SECONDS": "5"}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_pick_without_a_terminal_lists_the_candidates_in_one_line(
    space: Kube, tmp_path: Path
) -> None:
    two_pods(space)
    anywhere = podsync(space, tmp_path, "sync", "--pick", "--no-watch")
    assert anywhere.returncode == 1, anywhere.stdout + anywhere.stderr
    (line,) = [ln for ln in anywhere.stderr.splitlines() if ln.strip()]
    assert "--pick: 3 containers match (" in line and "run in a terminal to pick one" in line
    for name in ("py:main", "py:helper", "other:main"):
        assert name in line
    one_pod = podsync(space, tmp_path, "sync", "--pod", "py", "--pick", "--no-watch")
    assert one_pod.returncode == 1
    assert "--pick: 2 containers match (py:" in one_pod.stderr and "other" not in one_pod.stderr
    assert "Traceback" not in anywhere.stderr + one_pod.stderr
    # Without --pick, the error names the flag (and the devspace.yaml key).
    plain = podsync(space, tmp_path, "sync", "--pod", "py", "--no-watch")
    assert plain.returncode == 1
    assert "pod py has 2 containers (main, helper): choose one with --container" in plain.stderr


class Terminal:
    """A tmux session on its own server socket, running one command in a real terminal."""

    def __init__(self, cwd: Path, env: dict[str, str], argv: list[str]) -> None:
        self.socket = f"podsync-pick-{uuid.uuid4().hex[:8]}"
        self.last: str | None = None
        script = cwd / "run.sh"
        exports = "".join(
            f"export {k}={shlex.quote(env[k])}\n"
            for k in ("KUBECONFIG", "PATH", "PYTHONPATH", "HOME", "PODSYNC_POD_WAIT_SECONDS")
            if k in env
        )
        # As an interactive shell does: Ctrl-C stops the command, not the shell around it.
        script.write_text(
            f"trap : INT\n{exports}cd {shlex.quote(str(cwd))}\n{shlex.join(argv)}\n"
            'echo "EXIT=$?"\nexec sleep 600\n'
        )
        self.tmux("new-session", "-d", "-s", "pick", "-x", "160", "-y", "50",
                  f"sh {shlex.quote(str(script))}")  # fmt: skip

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-1000", "-t", "pick")

    def wait_for(self, needle: str, timeout: float = 90) -> str:
        wait_until(lambda: needle in self.screen(), timeout,
                   message=f"{needle!r} never shown:\n{self.screen()}")  # fmt: skip
        return self.screen()

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "pick", *keys)

    def choose(self, wanted: str) -> None:
        """Move the picker's pointer to the line that shows ``wanted``, then Enter."""
        screen = self.wait_for(QUESTION)
        options = [ln for ln in screen.split(QUESTION, 1)[1].splitlines() if ", " in ln]
        index = next(i for i, ln in enumerate(options) if wanted in ln)
        for _ in range(index):
            self.keys("Down")
        self.wait_for(f"» {wanted}")
        self.keys("Enter")

    def stop(self) -> str:
        """Ctrl-C, as a user stops podsync; the screen once it has exited (safe twice)."""
        if self.last is None:
            self.keys("C-c")
            try:
                self.last = self.wait_for("EXIT=", 30)
            finally:
                self.last = self.last or self.screen()
                self.tmux("kill-server")
        return self.last


@pytest.fixture
def terminal(space: Kube, tmp_path: Path) -> Iterator[type[Terminal]]:
    if shutil.which("tmux") is None:
        if os.environ.get("PODSYNC_REQUIRE_K8S") == "1":
            pytest.fail("tmux is required for the --pick tests (apt-get install tmux)")
        pytest.skip("tmux is not installed")
    opened: list[Terminal] = []

    class Opened(Terminal):
        def __init__(self, cwd: Path, env: dict[str, str], argv: list[str]) -> None:
            super().__init__(cwd, env, argv)
            opened.append(self)

    yield Opened
    for term in opened:
        term.stop()


def run_in_terminal(terminal: type[Terminal], kube: Kube, project: Path, *args: str) -> Terminal:
    env = {**kube.env, "PODSYNC_POD_WAIT_SECONDS": "60"}
    argv = [sys.executable, "-m", "podsync", "sync", *args, "--local-path", str(project)]
    return terminal(project.parent, env, argv)


def test_pick_on_a_terminal_offers_every_container_of_the_pod(
    space: Kube, terminal: type[Terminal], tmp_path: Path
) -> None:
    two_pods(space)
    project = tmp_path / "project"
    project.mkdir()
    (project / "picked.txt").write_text("to the helper")
    term = run_in_terminal(terminal, space, project, "--pod", "py", "--pick",
                           "--container-path", "/work")  # fmt: skip
    screen = term.wait_for(QUESTION)
    assert "py:main" in screen and "py:helper" in screen and "other:main" not in screen
    term.choose("py:helper")
    term.wait_for("watching for changes")
    assert space.cat("py", "/work/picked.txt", "helper") == b"to the helper"
    assert space.cat("py", "/work/picked.txt", "main") is None
    assert "EXIT=0" in term.stop()  # Ctrl-C still stops podsync after the picker


def test_ctrl_c_in_the_picker_chooses_nothing(
    space: Kube, terminal: type[Terminal], tmp_path: Path
) -> None:
    two_pods(space)
    project = tmp_path / "project"
    project.mkdir()
    term = run_in_terminal(terminal, space, project, "--pod", "py", "--pick")
    term.wait_for(QUESTION)
    screen = term.stop()
    assert "--pick: no container chosen" in screen and "EXIT=1" in screen
    assert "Traceback" not in screen


def test_pick_on_a_terminal_without_a_selector_offers_every_pod(
    space: Kube, terminal: type[Terminal], tmp_path: Path
) -> None:
    two_pods(space)
    project = tmp_path / "project"
    project.mkdir()
    (project / "picked.txt").write_text("to the other pod")
    term = run_in_terminal(terminal, space, project, "--pick", "--container-path", "/work")
    screen = term.wait_for(QUESTION)
    for name in ("py:main", "py:helper", "other:main"):
        assert name in screen
    term.choose("other:main")
    term.wait_for("watching for changes")
    assert "shell agent" in term.screen()  # busybox: no python3 there
    assert space.cat("other", "/work/picked.txt") == b"to the other pod"
    (project / "later.txt").write_text("later")
    wait_until(lambda: space.cat("other", "/work/later.txt") == b"later", 30, message="watch")


def test_a_picked_pod_that_is_replaced_is_followed_to_its_workloads_new_pod(
    space: Kube, tmp_path: Path
) -> None:
    """One candidate needs no question; when that pod is replaced, the sync goes on with the
    newest pod of the same Deployment (not the picker again, not another workload's pod)."""
    space.deployment("web", {"app": "web"})
    (first,) = space.ready_pods("app=web")
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.txt").write_text("one")
    sync = Podsync(space, tmp_path, "sync", "--pick", "--local-path", str(project),
                   "--container-path", "/work")  # fmt: skip
    try:
        sync.wait_for("watching for changes")
        assert f"/{first}:main" in sync.output
        space.pod("bystander", [container("main", space.images.busybox)])
        space.delete_pod(first, wait=False)
        (project / "b.txt").write_text("during the gap")

        def moved() -> str | None:
            names = [n for n in space.ready_pods("app=web") if n != first]
            if names and space.cat(names[0], "/work/b.txt") == b"during the gap":
                return names[0]
            return None

        wait_until(moved, 120, message=f"the sync did not follow the Deployment:\n{sync.output}")
        assert space.cat("bystander", "/work/a.txt") is None
        assert QUESTION not in sync.output
    finally:
        assert sync.stop() == 0, sync.output

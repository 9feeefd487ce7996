"""``--all-replicas`` on the real cluster kit: a Deployment of 3 replicas, scaled to 4 and to 2,
synced by the real `podsync sync` and `podsync dev`, checked with the real kubectl.

Every local change reaches every Ready pod; only the primary (the newest Ready pod) is synced
back; a pod that appears gets the files and joins; pods that go away are dropped with one
info line while the sync goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.k8s.kit import Kube, Podsync
from tests.support.wait import wait_until

from podsync.engine.status import read_status, status_path

pytestmark = pytest.mark.k8s

LABEL = "app=rep"
ROOT = "/data"


@pytest.fixture
def started() -> Iterator[list[Podsync]]:
    procs: list[Podsync] = []
    yield procs
    for proc in procs:
        proc.stop()


def _rows(project: Path) -> dict[str, str | None]:
    """Sync name -> role, from the running engine's status file."""
    status = read_status(status_path(project / ".devspace"))
    return {} if status is None else {s.name: s.role for s in status.syncs}


def _replica_pods(project: Path) -> set[str]:
    return {name.split("@", 1)[1] for name in _rows(project) if "@" in name}


def _everywhere(kube: Kube, pods: list[str], path: str, content: bytes, sync: Podsync) -> None:
    for pod in pods:
        wait_until(
            lambda pod=pod: kube.cat(pod, f"{ROOT}/{path}") == content,  # type: ignore[misc]
            90,
            message=f"{path} not in pod {pod}:\n{sync.output}",
        )


def test_all_replicas_get_uploads_only_the_primary_is_downloaded_scale_up_and_down(
    space: Kube, started: list[Podsync], tmp_path: Path
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "hello.txt").write_text("hello")
    space.deployment("rep", {"app": "rep"}, replicas=3)
    pods = space.ready_pods(LABEL)
    assert len(pods) == 3
    args = ("sync", "-l", LABEL, "--container-path", ROOT, "--all-replicas")
    sync = Podsync(space, project, *args)
    started.append(sync)
    sync.wait_for("watching for changes", count=3)  # the primary and two replicas
    _everywhere(space, pods, "hello.txt", b"hello", sync)

    # status sync: one row per pod, the primary marked.
    wait_until(lambda: len(_replica_pods(project)) == 2, 30, message="no replica rows")
    assert _rows(project)["sync"] == "primary"
    replicas = _replica_pods(project)
    (primary,) = set(pods) - replicas
    assert all(role == "replica" for name, role in _rows(project).items() if "@" in name)

    # Every local change goes to every pod.
    (project / "edit.txt").write_text("edited")
    _everywhere(space, pods, "edit.txt", b"edited", sync)

    # A container edit in a replica is not downloaded; one in the primary is.
    replica = sorted(replicas)[0]
    space.sh(replica, f"echo replica > {ROOT}/from-replica.txt")
    space.sh(primary, f"echo primary > {ROOT}/from-primary.txt")
    wait_until(
        lambda: (project / "from-primary.txt").exists(), 60, message=f"primary edit:{sync.output}"
    )
    (project / "after.txt").write_text("after")  # the replica's session has seen its change
    _everywhere(space, [replica], "after.txt", b"after", sync)
    assert not (project / "from-replica.txt").exists()
    assert (project / "from-primary.txt").read_text() == "primary\n"
    assert space.cat(replica, f"{ROOT}/from-replica.txt") == b"replica\n"  # left alone there

    # Scale to 4: the new pod gets the files and joins.
    space.kubectl("scale", "deployment/rep", "--replicas=4", check=True)
    wait_until(lambda: len(space.ready_pods(LABEL)) == 4, 120, message="no 4th pod")
    (new,) = set(space.ready_pods(LABEL)) - set(pods)
    _everywhere(space, [new], "hello.txt", b"hello", sync)
    _everywhere(space, [new], "edit.txt", b"edited", sync)
    assert space.cat(new, f"{ROOT}/from-primary.txt") == b"primary\n"  # local now: uploaded
    wait_until(lambda: new in _replica_pods(project), 30, message="no row for the new pod")
    assert _rows(project)["sync"] == "primary"  # a newer pod does not take the primary over

    # Scale to 2: the pods that go away are dropped without error; the sync goes on.
    space.kubectl("scale", "deployment/rep", "--replicas=2", check=True)
    wait_until(
        lambda: len(space.pods(LABEL)) == 2 and len(space.ready_pods(LABEL)) == 2,
        120,
        message="scale-down did not end",
    )
    left = space.ready_pods(LABEL)
    # Two pods went: each is a replica dropped, or the primary, whose place a replica takes.
    wait_until(
        lambda: sync.output.count("; dropped") + sync.output.count("is the primary now") >= 2,
        60,
        message=f"the pods that went were not dropped:\n{sync.output}",
    )
    (project / "late.txt").write_text("late")
    _everywhere(space, left, "late.txt", b"late", sync)
    wait_until(
        lambda: len(_rows(project)) == 2 and len(_replica_pods(project)) == 1,
        60,
        message=f"status rows are not the 2 pods left: {_rows(project)}\n{sync.output}",
    )
    assert _replica_pods(project) < set(left)
    assert sync.proc.poll() is None, sync.output
    assert "Traceback" not in sync.output
    assert "ERROR" not in sync.output and "halted" not in sync.output
    # The primary (whichever pod it is now) is still synced back.
    now_primary = (set(left) - _replica_pods(project)).pop()
    space.sh(now_primary, f"echo back > {ROOT}/back.txt")
    wait_until(lambda: (project / "back.txt").exists(), 90, message=f"download:{sync.output}")
    assert sync.stop() == 0, sync.output


def test_dev_all_replicas_uploads_to_each_pod(
    space: Kube, started: list[Podsync], tmp_path: Path
) -> None:
    project = tmp_path / "d"
    project.mkdir()
    (project / "src").mkdir()
    (project / "src" / "app.py").write_text("x = 1\n")
    (project / "devspace.yaml").write_text(
        "dev:\n  sync:\n  - labelSelector:\n      app: dev\n"
        f"    localSubPath: ./src\n    containerPath: {ROOT}\n"
    )
    space.deployment("dev", {"app": "dev"}, replicas=2)
    pods = space.ready_pods("app=dev")
    dev = Podsync(space, project, "dev", "--all-replicas")
    started.append(dev)
    dev.wait_for("watching for changes", count=2)
    _everywhere(space, pods, "app.py", b"x = 1\n", dev)
    (project / "src" / "app.py").write_text("x = 2\n")
    _everywhere(space, pods, "app.py", b"x = 2\n", dev)
    rows = _rows(project)
    assert rows["sync-0"] == "primary" and len(rows) == 2, rows
    assert dev.stop() == 0, dev.output


def test_no_watch_all_replicas_syncs_each_pod_then_exits(
    space: Kube, started: list[Podsync], tmp_path: Path
) -> None:
    project = tmp_path / "n"
    project.mkdir()
    (project / "one.txt").write_text("one")
    space.deployment("nw", {"app": "nw"}, replicas=2)
    pods = space.ready_pods("app=nw")
    args = ("sync", "-l", "app=nw", "--container-path", ROOT, "--all-replicas", "--no-watch")
    sync = Podsync(space, project, *args)
    started.append(sync)
    assert sync.proc.wait(120) == 0, sync.output
    for pod in pods:
        assert space.cat(pod, f"{ROOT}/one.txt") == b"one", sync.output
    assert "Traceback" not in sync.output


def test_rollout_replaces_every_pod_and_each_new_one_joins(
    space: Kube, started: list[Podsync], tmp_path: Path
) -> None:
    project = tmp_path / "r"
    project.mkdir()
    (project / "hello.txt").write_text("hello")
    space.deployment("ro", {"app": "ro"}, replicas=2)
    old = set(space.ready_pods("app=ro"))
    sync = Podsync(space, project, "sync", "-l", "app=ro", "--container-path", ROOT,
                   "--all-replicas")  # fmt: skip
    started.append(sync)
    sync.wait_for("watching for changes", count=2)
    space.kubectl("rollout", "restart", "deployment/ro", check=True)
    space.kubectl("rollout", "status", "deployment/ro", "--timeout=120s", timeout=150, check=True)
    wait_until(
        lambda: not old & {p["metadata"]["name"] for p in space.pods("app=ro")},
        120,
        message="the old pods did not go",
    )
    new = space.ready_pods("app=ro")
    assert len(new) == 2 and not old & set(new)
    (project / "after.txt").write_text("after the rollout")
    _everywhere(space, new, "hello.txt", b"hello", sync)
    _everywhere(space, new, "after.txt", b"after the rollout", sync)
    wait_until(
        lambda: len(_rows(project)) == 2 and _replica_pods(project) < set(new),
        60,
        message=f"status rows are not the new pods: {_rows(project)}\n{sync.output}",
    )
    (primary,) = set(new) - _replica_pods(project)
    space.sh(primary, f"echo back > {ROOT}/back.txt")
    wait_until(lambda: (project / "back.txt").exists(), 90, message=f"download:{sync.output}")
    assert sync.proc.poll() is None and "Traceback" not in sync.output, sync.output
    assert sync.stop() == 0, sync.output

"""The latency that ``podsync status sync`` reports, against an external probe, on the real
cluster kit (issue 10, part 4): a pod per agent, the real ``podsync sync --pod``, the probe's
``sh`` loops started with the kit's ``kubectl exec -i``.

The method and the tolerance (50 ms around the probe's p50; the shell agent's down figure
leaves out its poll wait, so only its upper side) are those of tests/e2e/test_latency.py; the
exec stream here goes through the API server and the kubelet, which the probe's figure
includes on its side and the engine's clock offset (ping round trip) corrects on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.k8s.kit import Kube, Podsync, container, kubectl_path
from tests.support.latency_probe import (
    WATCH,
    WRITE,
    ContainerProbe,
    engine_figures,
    external_down,
    external_up,
    p50_ms,
)

pytestmark = pytest.mark.k8s

SAVES = 15
TOLERANCE_MS = 50.0


@pytest.mark.parametrize("agent", ["python", "shell"])
def test_engine_latency_on_the_cluster_matches_an_external_probe(
    space: Kube, tmp_path: Path, agent: str
) -> None:
    image = space.images.py if agent == "python" else space.images.busybox
    space.pod("lat", [container("main", image)])
    project = tmp_path / "project"
    project.mkdir()
    proc = Podsync(space, project, "sync", "--local-path", str(project), "--pod", "lat")
    try:
        proc.wait_for("watching for changes")
        assert f"{agent} agent" in proc.output
        exec_argv = [str(kubectl_path()), "--kubeconfig", str(space.kubeconfig)]
        exec_argv += ["exec", "-i", "lat", "--"]

        watch = ContainerProbe(exec_argv, WATCH, space.env)
        try:
            up = external_up(project, watch, [f"up-{i}.txt" for i in range(SAVES)])
        finally:
            watch.close()
        engine_up = engine_figures(project, "up", SAVES)["up"]
        print(f"k8s {agent} up: external p50 {p50_ms(up):.1f} ms, engine {engine_up}")
        assert engine_up["count"] == SAVES
        assert abs(engine_up["p50_ms"] - p50_ms(up)) <= TOLERANCE_MS, (up, engine_up)

        writer = ContainerProbe(exec_argv, WRITE, space.env)
        try:
            down = external_down(project, writer, [f"down-{i}.txt" for i in range(SAVES)])
        finally:
            writer.close()
        figures = engine_figures(project, "down", SAVES)
        engine_down = figures["down"]
        print(f"k8s {agent} down: external p50 {p50_ms(down):.1f} ms, engine {figures}")
        assert engine_down["count"] == SAVES
        assert 0 <= engine_down["p50_ms"] <= p50_ms(down) + TOLERANCE_MS, (down, engine_down)
        if agent == "python":
            assert figures["down_clock"] == "agent_event"
            assert engine_down["p50_ms"] >= p50_ms(down) - TOLERANCE_MS, (down, engine_down)
        else:
            assert figures["down_clock"] == "hint_arrival"
    finally:
        print(proc.output)
        proc.stop()

"""The real cluster kit's plumbing: test images in the kit's containerd, pods with loopback
only, and the skip-or-fail rule (CI can never go green with Kubernetes tests skipped)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.k8s.kit import Kube, container

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.k8s
def test_test_images_run_with_workdir_and_loopback_only(kube: Kube) -> None:
    kube.pod("kit-py")
    kube.pod("kit-bb", [container("main", kube.images.busybox)])
    py = kube.exec("kit-py", ["sh", "-c", "pwd; python3 -c 'import zlib, ctypes; print(3)'"])
    assert py.stdout.decode().split() == ["/app", "3"], py.stderr
    bb = kube.exec(
        "kit-bb", ["sh", "-c", "pwd; command -v python3 || echo none; ls /sys/class/net"]
    )
    assert bb.stdout.decode().split() == ["/app", "none", "lo"], bb.stderr
    # The kit's pods see only their own loopback (never traffic outside 127.0.0.0/8).
    net = kube.exec("kit-py", ["ls", "/sys/class/net"])
    assert net.stdout.decode().split() == ["lo"]


@pytest.mark.k8s
def test_the_namespace_is_the_kubeconfigs_context(kube: Kube) -> None:
    out = kube.kubectl("config", "view", "--minify", "-o", "jsonpath={..namespace}")
    assert out.stdout.decode() == kube.namespace
    labels = kube.kubectl("get", "namespace", kube.namespace, "-o", "jsonpath={.metadata.labels}")
    assert b'"podsync-test":"1"' in labels.stdout


@pytest.mark.parametrize("required", [False, True], ids=["skips", "fails-in-ci"])
def test_without_the_kit_kubernetes_tests_skip_or_fail_when_required(
    required: bool, tmp_path: Path
) -> None:
    """CI sets PODSYNC_REQUIRE_K8S=1 so it can never go green with Kubernetes tests skipped."""
    env = {k: v for k, v in os.environ.items() if k != "PODSYNC_REQUIRE_K8S"}
    env["PODSYNC_K8S_STATE_DIR"] = str(tmp_path / "no-kit-here")
    if required:
        env["PODSYNC_REQUIRE_K8S"] = "1"
    test = "tests/k8s/test_kit.py::test_the_namespace_is_the_kubeconfigs_context"
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    missing = f"no Kubernetes kit is running (no {tmp_path / 'no-kit-here' / 'kubeconfig'};"
    if required:
        assert ran.returncode == 1, ran.stdout
        assert "Kubernetes is required (PODSYNC_REQUIRE_K8S=1) but " + missing in ran.stdout
    else:
        assert ran.returncode == 0, ran.stdout
        assert "1 skipped" in ran.stdout
        assert "Kubernetes is not available: " + missing in ran.stdout

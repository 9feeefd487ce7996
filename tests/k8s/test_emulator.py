"""The emulator stays faithful where podsync's tests still use it (test_exec_fallbacks.py):
the real kubectl 1.32 execs through it (WebSocket v5), and falls back to SPDY when the upgrade
is refused, as against a real API server behind a proxy without WebSocket support.

Everything else (pods, selectors, logs, states, restarts) runs on the real cluster kit now.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from k8s_emulator.fixture import K8sApi

pytestmark = pytest.mark.docker


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_kubectl_exec_round_trips_binary_data(k8s: K8sApi) -> None:
    pod = _name("exec")
    k8s.create_pod(pod)
    data = os.urandom(3 << 20) + bytes(range(256)) * 64
    out = k8s.kubectl("exec", "-i", pod, "--", "cat", input=data)
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    failing = k8s.kubectl("exec", "-i", pod, "--", "sh", "-c", "echo oops >&2; exit 7")
    assert failing.returncode == 7
    assert b"oops" in failing.stderr
    # kubectl 1.32 talks WebSocket (v5) first; the emulator records what it offered.
    assert any(ua.startswith("kubectl/v1.32") and chosen == "v5.channel.k8s.io"
               for ua, _, chosen in k8s.emulator.switches.exec_log)  # fmt: skip


def test_kubectl_falls_back_to_spdy_when_websocket_is_refused(k8s: K8sApi) -> None:
    """Documents kubectl 1.32: WebSocket (v5 only) first, SPDY/3.1 by POST when refused."""
    pod = _name("spdy")
    k8s.create_pod(pod)
    k8s.emulator.switches.refuse_upgrade_except = ("nobody",)
    mark = len(k8s.emulator.switches.exec_log)
    out = k8s.kubectl("exec", "-i", pod, "--", "true")
    assert out.returncode != 0 and b"Upgrade request required" in out.stderr
    tried = [(offered, chosen) for _, offered, chosen in k8s.emulator.switches.exec_log[mark:]]
    assert tried == [
        ("v5.channel.k8s.io", "<refused GET websocket>"),
        ("", "<refused POST SPDY/3.1>"),
    ]

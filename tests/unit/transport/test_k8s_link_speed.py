"""Compression on Kubernetes follows where the API server is, not the target type: a cluster
on this machine (loopback) never pays zlib; any other server is of unknown distance
(compressed)."""

from __future__ import annotations

import pytest

from podsync.limits import COMPRESS_BELOW_LINK_BYTES_PER_SECOND
from podsync.transport.kubeconfig import ApiAccess
from podsync.transport.kubernetes import KubernetesTransport


@pytest.mark.parametrize(
    ("server", "fast"),
    [
        ("https://127.0.0.1:16543", True),
        ("https://127.9.0.1", True),
        ("https://localhost:6443/prefix", True),
        ("https://[::1]:6443", True),
        ("https://10.0.0.1:6443", False),
        ("https://k8s.example.com", False),
        ("https://[2001:db8::1]:443", False),
    ],
)
def test_the_link_is_fast_only_for_a_server_on_loopback(server: str, fast: bool) -> None:
    api = ApiAccess(host=server, namespace="default", context=None)
    transport = KubernetesTransport("pod", "main", "default", api)
    speed = transport.link_bytes_per_second
    if fast:
        assert speed is not None and speed >= COMPRESS_BELOW_LINK_BYTES_PER_SECOND
    else:
        assert speed is None

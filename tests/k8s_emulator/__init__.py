"""A Kubernetes API emulator for podsync's tests, kept only for what the real cluster kit
(../shared/k8s, tests/k8s/kit.py) cannot be made to do: an API server that speaks only
``v4.channel.k8s.io`` exec, and one that refuses the WebSocket upgrade (tests/k8s/
test_exec_fallbacks.py, with the kubectl behaviour they rely on in test_emulator.py). Every
other Kubernetes test runs on the real cluster.

It STANDS IN for a real Kubernetes API server. It serves the subset of the real API that
``kubectl`` 1.32 and podsync use, with the real wire formats, over HTTPS with a generated CA
and bearer-token auth (so clients really load the CA and really send their credentials), and
it backs every pod container with a real Docker container. It is a test double: it does not
schedule, has no controllers and keeps everything in memory.

Modules: ``emulator`` (lifecycle, TLS, kubeconfig, test hooks), ``server`` (auth, discovery,
pods, watch, switches), ``streams`` (exec over WebSocket, logs), ``tty`` (exec with a
terminal), ``kubelet`` (Docker containers, restarts), ``pods`` (objects, status, events,
Table), ``selectors``, ``docker``, ``fixture`` (what the pytest fixtures yield).

Known gaps: no SPDY (kubectl falls back to it only when WebSocket fails), no
PATCH/PUT, no other resource kinds, no server-side apply, no admission or RBAC.
"""

from .emulator import Emulator
from .server import Switches

__all__ = ["Emulator", "Switches"]

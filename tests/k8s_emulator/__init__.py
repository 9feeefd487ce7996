"""A Kubernetes API emulator for podsync's tests.

It STANDS IN for a real Kubernetes API server: none can run on this machine (no kubelet, no
etcd, no cluster). It serves the subset of the real API that ``kubectl`` 1.32 and podsync use,
with the real wire formats, over HTTPS with a generated CA and bearer-token auth (so clients
really load the CA and really send their credentials), and it backs every pod container with a
real Docker container. It is a test double: it does not schedule, has no controllers and keeps
everything in memory.

Modules: ``emulator`` (lifecycle, TLS, kubeconfig), ``server`` (auth, discovery, pods, watch),
``streams`` (exec over WebSocket, logs), ``kubelet`` (Docker containers), ``pods`` (objects,
status, events, Table), ``selectors``, ``docker``.
"""

from .emulator import Emulator
from .server import Switches

__all__ = ["Emulator", "Switches"]

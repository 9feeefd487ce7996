"""Lifecycle of one Kubernetes API emulator: TLS, background thread, kubeconfig, test hooks.

Owns: :class:`Emulator` (start/stop in a thread with its own event loop, a trustme CA and
server certificate, a random bearer token, a kubeconfig writer) and the hooks tests use to
create pods through the real HTTP API and to force pod states. May import: stdlib, aiohttp,
trustme, the emulator's modules.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import secrets
import socket
import ssl
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import trustme
from aiohttp import web

from .docker import remove_instance_containers
from .kubelet import Kubelet
from .pods import Obj, Pod, PodStore
from .server import Api, Switches, build_app
from .streams import Streams

T = TypeVar("T")


class Emulator:
    """An HTTPS Kubernetes API on 127.0.0.1 (random port) backed by Docker containers."""

    def __init__(
        self,
        image_map: Mapping[str, str] | None = None,
        default_image: str = "podsync-test-busybox:latest",
        local_images: set[str] | None = None,
    ) -> None:
        self.instance = uuid.uuid4().hex[:10]
        self.token = secrets.token_hex(16)
        self.switches = Switches()
        self.store = PodStore()
        self.kubelet = Kubelet(
            self.store, self.instance, image_map or {}, default_image, local_images or set()
        )
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._monitor: asyncio.Future[None] | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Emulator:
        self._thread.start()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        api = Api(self.store, self.kubelet, self.switches)
        streams = Streams(self.store, self.kubelet, self.switches)
        app = build_app(api, self.token, streams.exec, streams.logs)
        # Short shutdown grace: an exec whose client never closes stdin would hold it open.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        # Client certificates are optional (tokens are the default) but verified when sent.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        self._ca.configure_trust(ctx)
        await web.SockSite(self._runner, sock, ssl_context=ctx).start()
        self._monitor = asyncio.ensure_future(self.kubelet.monitor())

    def stop(self) -> None:
        async def _stop() -> None:
            if self.kubelet.events_proc is not None:
                self.kubelet.events_proc.kill()
                await self.kubelet.events_proc.wait()
            # Let in-flight ``docker run``/``rm`` finish: a cancelled one would leave an
            # orphan container behind the final cleanup.
            if self.kubelet.tasks:
                await asyncio.wait(list(self.kubelet.tasks), timeout=20)
            for task in list(self.kubelet.tasks):
                task.cancel()
            if self._runner is not None:
                await self._runner.cleanup()

        try:
            self.call(_stop, timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            remove_instance_containers(self.instance)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
        """Run ``fn()`` on the emulator's loop and return its result."""

        async def wrapper() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    # -- client side -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def client_cert_user(self) -> dict[str, str]:
        """A kubeconfig ``user`` that authenticates with a client certificate instead."""
        leaf = self._ca.issue_cert("tester@emulator", common_name="tester")
        key = leaf.private_key_pem.bytes()
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return {
            "client-certificate-data": base64.b64encode(chain).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        }

    def write_kubeconfig(
        self, path: Path, namespace: str = "default", token: str | None = None
    ) -> Path:
        """A kubeconfig with the CA inline, a token user and a current context."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}}],
            "users": [{"name": "tester", "user": {"token": token or self.token}}],
            "contexts": [{"name": "emulator", "context": {
                "cluster": "emulator", "user": "tester", "namespace": namespace}}],
            "current-context": "emulator",
        }  # fmt: skip
        path.write_text(json.dumps(config, indent=2))
        return path

    def request(self, method: str, path: str, body: Obj | None = None) -> tuple[int, Any]:
        """One HTTPS request to the emulator's API, as a client would send it."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=60)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, json.loads(data) if data else None
        finally:
            conn.close()

    # -- test hooks ------------------------------------------------------------------------
    def pod(self, namespace: str, name: str) -> Pod:
        pod = self.store.get(namespace, name)
        if pod is None:
            raise KeyError(f"{namespace}/{name}")
        return pod

    def pod_object(self, namespace: str, name: str) -> Obj | None:
        code, obj = self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        return obj if code == 200 else None

    def force_state(self, namespace: str, name: str, state: str) -> None:
        """Hold a pod in Pending / ContainerCreating / ImagePullBackOff / CrashLoopBackOff."""

        async def run() -> None:
            self.kubelet.force_state(self.pod(namespace, name), state)

        self.call(run)

    def resume(self, namespace: str, name: str) -> None:
        """Let a pod held by :meth:`force_state` (or the state annotation) run."""
        self.call(lambda: self.kubelet.resume(self.pod(namespace, name)))

    def restart_container(self, namespace: str, name: str, container: str) -> None:
        self.call(lambda: self.kubelet.restart_container(self.pod(namespace, name), container))

    def docker_names(self) -> list[str]:
        """Docker names of every container currently backing a pod."""
        return [c.docker_name for p in list(self.store.pods.values()) for c in p.containers]

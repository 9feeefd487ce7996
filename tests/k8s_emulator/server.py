"""HTTP routes of the Kubernetes API emulator: auth, discovery, namespaces and pods.

Owns: the aiohttp application (bearer-token middleware, ``/version``, ``/api``, ``/apis``,
``/api/v1`` discovery, namespaces, pod create/list/get/delete/watch) and the emulator's
switches. Exec and logs live in ``streams``. May import: stdlib, aiohttp, the emulator's
modules.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .kubelet import Kubelet
from .pods import Obj, Pod, PodStore, WatchEvent, new_manifest, render, table
from .selectors import SelectorError, parse_field_selector, parse_label_selector

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Switches:
    """Knobs tests flip to make the emulator behave like other servers or proxies."""

    #: Subprotocols the exec endpoint accepts, in server order.
    exec_protocols: tuple[str, ...] = (
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    )
    #: When set, WebSocket upgrades on exec are refused (HTTP 400) for clients whose
    #: User-Agent does not start with one of these prefixes: stands for a proxy that breaks
    #: WebSockets while ``kubectl`` (allowed, since the emulator has no SPDY) still works.
    refuse_upgrade_except: tuple[str, ...] | None = None
    #: Every exec request seen: (User-Agent, offered subprotocols, chosen subprotocol).
    exec_log: list[tuple[str, str, str]] = field(default_factory=list)

    def reset(self) -> None:
        """Back to a well-behaved API server (the log is kept)."""
        self.exec_protocols = Switches.exec_protocols
        self.refuse_upgrade_except = None


def status(code: int, reason: str, message: str, details: Obj | None = None) -> web.Response:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


def not_found(name: str) -> web.Response:
    details = {"name": name, "kind": "pods"}
    return status(404, "NotFound", f'pods "{name}" not found', details)


def make_auth(token: str) -> Any:
    """Bearer token, or a client certificate signed by the emulator's CA (checked by TLS)."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        has_token = request.headers.get("Authorization", "") == f"Bearer {token}"
        has_cert = request.transport is not None and bool(
            request.transport.get_extra_info("peercert")
        )
        if not (has_token or has_cert):
            return status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    return auth


_POD_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_RESOURCES: list[Obj] = [
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
     "verbs": ["create", "delete", "get", "list", "watch"], "shortNames": ["ns"]},
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
     "verbs": _POD_VERBS, "shortNames": ["po"], "categories": ["all"]},
    {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
     "verbs": ["create", "get"]},
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
     "verbs": ["get", "patch", "update"]},
]  # fmt: skip


class Api:
    """Route handlers bound to one store and kubelet."""

    def __init__(self, store: PodStore, kubelet: Kubelet, switches: Switches) -> None:
        self.store, self.kubelet, self.switches = store, kubelet, switches
        self.namespaces = {"default", "kube-system", "kube-public"}

    async def version(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"major": "1", "minor": "32", "gitVersion": "v1.32.4", "gitCommit": "emulator",
             "gitTreeState": "clean", "buildDate": "2025-04-22T00:00:00Z",
             "goVersion": "go1.23.8", "compiler": "gc", "platform": "linux/amd64"}
        )  # fmt: skip

    async def api(self, request: web.Request) -> web.Response:
        addr = f"{request.host}"
        return web.json_response(
            {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}
        )  # fmt: skip

    async def apis(self, _: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def api_v1(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
             "resources": _RESOURCES}
        )  # fmt: skip

    async def openapi_v3(self, _: web.Request) -> web.Response:
        """Only what ``kubectl create`` checks: server-side ``fieldValidation`` on pods."""
        return web.json_response(
            {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=emulator"}}}
        )

    async def openapi_v3_core(self, _: web.Request) -> web.Response:
        param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        gvk = {"group": "", "version": "v1", "kind": "Pod"}
        patch = {"parameters": [param], "x-kubernetes-group-version-kind": gvk,
                 "responses": {"200": {"description": "OK"}}}  # fmt: skip
        return web.json_response(
            {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
             "paths": {"/api/v1/namespaces/{namespace}/pods/{name}": {"patch": patch}}}
        )  # fmt: skip

    def _namespace(self, name: str) -> Obj:
        return {"kind": "Namespace", "apiVersion": "v1",
                "metadata": {"name": name, "resourceVersion": "1"},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}  # fmt: skip

    async def list_namespaces(self, _: web.Request) -> web.Response:
        items = [self._namespace(n) for n in sorted(self.namespaces)]
        return web.json_response(
            {"kind": "NamespaceList", "apiVersion": "v1",
             "metadata": {"resourceVersion": str(self.store.rv)}, "items": items}
        )  # fmt: skip

    async def get_namespace(self, request: web.Request) -> web.Response:
        name = request.match_info["ns"]
        if name not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{name}" not found')
        return web.json_response(self._namespace(name))

    def _matching(self, request: web.Request) -> list[Obj]:
        ns = request.match_info.get("ns")
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
        objs = []
        for pod in sorted(self.store.pods.values(), key=lambda p: (p.namespace, p.name)):
            if ns is not None and pod.namespace != ns:
                continue
            obj = self._render(pod)
            if labels(pod.labels) and fields(obj):
                objs.append(obj)
        return objs

    def _render(self, pod: Pod) -> Obj:
        return render(pod, self.store.rv)

    async def list_pods(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.query.get("watch") in ("1", "true"):
                return await self.watch_pods(request)
            objs = self._matching(request)
        except SelectorError as exc:
            return status(400, "BadRequest", str(exc))
        if "as=Table" in request.headers.get("Accept", ""):
            include = request.query.get("includeObject", "Metadata")
            return web.json_response(table(objs, self.store.rv, include))
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1",
             "metadata": {"resourceVersion": str(self.store.rv)}, "items": objs}
        )  # fmt: skip

    async def get_pod(self, request: web.Request) -> web.Response:
        pod = self.store.get(request.match_info["ns"], request.match_info["name"])
        if pod is None:
            return not_found(request.match_info["name"])
        obj = self._render(pod)
        if "as=Table" in request.headers.get("Accept", ""):
            return web.json_response(table([obj], self.store.rv, "Metadata"))
        return web.json_response(obj)

    async def create_pod(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return status(400, "BadRequest", f"invalid JSON body: {exc}")
        manifest = new_manifest(body, ns)
        name = manifest["metadata"].get("name")
        if not name:
            return status(422, "Invalid", "Pod is invalid: metadata.name: Required value")
        if not manifest["spec"].get("containers"):
            msg = f'Pod "{name}" is invalid: spec.containers: Required value'
            return status(422, "Invalid", msg)
        if self.store.get(ns, name) is not None:
            details = {"name": name, "kind": "pods"}
            return status(409, "AlreadyExists", f'pods "{name}" already exists', details)
        self.namespaces.add(ns)
        pod = self.kubelet.new_pod(manifest, time.monotonic())
        obj = self.store.add(pod)
        self.kubelet.spawn(self.kubelet.start_pod(pod))
        return web.json_response(obj, status=201)

    async def delete_pod(self, request: web.Request) -> web.Response:
        pod = self.store.get(request.match_info["ns"], request.match_info["name"])
        if pod is None:
            return not_found(request.match_info["name"])
        if not pod.deleting:
            pod.deleting = True
            pod.phase = "Running" if pod.phase == "Running" else pod.phase
            obj = self.store.emit("MODIFIED", pod)
            self.kubelet.spawn(self.kubelet.delete_pod(pod))
        else:
            obj = self._render(pod)
        return web.json_response(obj)

    async def watch_pods(self, request: web.Request) -> web.StreamResponse:
        """Chunked JSON lines of watch events (ADDED / MODIFIED / DELETED / ERROR)."""
        ns = request.match_info.get("ns")
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.store.watchers.add(queue)
        try:
            rv_text = request.query.get("resourceVersion") or "0"
            if rv_text == "0":
                initial = [
                    WatchEvent(self.store.rv, "ADDED", self._render(p))
                    for p in self.store.pods.values()
                ]
            else:
                replay = self.store.since(int(rv_text))
                if replay is None:
                    return status(410, "Expired", f"too old resource version: {rv_text}")
                initial = replay
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            deadline = time.monotonic() + timeout
            pending = list(initial)
            while True:
                for ev in pending:
                    obj = ev.obj
                    meta = obj["metadata"]
                    if (
                        (ns is None or meta["namespace"] == ns)
                        and labels(meta.get("labels") or {})
                        and fields(obj)
                    ):
                        line = json.dumps({"type": ev.type, "object": obj}) + "\n"
                        await resp.write(line.encode())
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    pending = [await asyncio.wait_for(queue.get(), left)]
                except TimeoutError:
                    break
            await resp.write_eof()
            return resp
        finally:
            self.store.watchers.discard(queue)


def build_app(api: Api, token: str, exec_handler: Handler, log_handler: Handler) -> web.Application:
    app = web.Application(middlewares=[make_auth(token)], client_max_size=64 << 20)
    r = app.router
    r.add_get("/version", api.version)
    r.add_get("/api", api.api)
    r.add_get("/apis", api.apis)
    r.add_get("/api/v1", api.api_v1)
    r.add_get("/openapi/v3", api.openapi_v3)
    r.add_get("/openapi/v3/api/v1", api.openapi_v3_core)
    r.add_get("/api/v1/namespaces", api.list_namespaces)
    r.add_get("/api/v1/namespaces/{ns}", api.get_namespace)
    r.add_get("/api/v1/pods", api.list_pods)
    r.add_get("/api/v1/namespaces/{ns}/pods", api.list_pods)
    r.add_post("/api/v1/namespaces/{ns}/pods", api.create_pod)
    r.add_get("/api/v1/namespaces/{ns}/pods/{name}", api.get_pod)
    r.add_delete("/api/v1/namespaces/{ns}/pods/{name}", api.delete_pod)
    r.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/exec", exec_handler)
    r.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", log_handler)
    return app

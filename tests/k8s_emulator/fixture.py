"""Test-facing wrapper around the emulator: pods by name, kubectl with the right kubeconfig.

Owns: :class:`K8sApi` (what the ``k8s_api`` pytest fixture yields) and :func:`start_k8s_api`.
Other test folders can reuse it: ``from k8s_emulator.fixture import start_k8s_api``.
May import: stdlib and the emulator's modules.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .docker import BUSYBOX_IMAGE, PY_IMAGE, SHELL_LESS_IMAGE, ensure_test_images
from .emulator import Emulator
from .pods import Obj

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def is_ready(obj: Obj | None) -> bool:
    if obj is None:
        return False
    conds = obj["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


@dataclass
class K8sApi:
    emulator: Emulator
    kubeconfig_path: Path
    created: list[tuple[str, str]] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.emulator.token

    def kubectl(
        self, *args: str, input: bytes = b"", timeout: float = 120, env: Mapping[str, str] = {}
    ) -> subprocess.CompletedProcess[bytes]:
        full_env = {**os.environ, "KUBECONFIG": str(self.kubeconfig_path), **env}
        return subprocess.run(
            ["kubectl", *args], input=input, capture_output=True, env=full_env, timeout=timeout
        )

    def create_pod(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        containers: Sequence[tuple[str, str]] = (("main", "busybox"),),
        namespace: str = "default",
        workdir: str | None = None,
        command: Sequence[str] | None = None,
        annotations: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> Obj:
        """Create a pod through the HTTPS API; with ``wait``, return it once Ready."""
        specs = []
        for cname, image in containers:
            spec: Obj = {"name": cname, "image": image}
            if workdir:
                spec["workingDir"] = workdir
            if command:
                spec["command"] = list(command)
            specs.append(spec)
        meta: Obj = {"name": name, "labels": dict(labels or {})}
        if annotations:
            meta["annotations"] = dict(annotations)
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": specs}}
        code, obj = self.emulator.request("POST", f"/api/v1/namespaces/{namespace}/pods", body)
        if code != 201:
            raise AssertionError(f"create pod {name}: HTTP {code}: {obj}")
        self.created.append((namespace, name))
        if not wait:
            return dict(obj)

        def ready() -> Obj | None:
            obj = self.emulator.pod_object(namespace, name)
            return obj if is_ready(obj) else None

        return dict(wait_until(ready, 60, f"pod {namespace}/{name} Ready"))

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True) -> None:
        self.emulator.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")
        if wait:
            wait_until(
                lambda: self.emulator.pod_object(namespace, name) is None,
                60,
                f"pod {namespace}/{name} gone",
            )

    def cleanup_created(self, since: int = 0) -> None:
        """Delete the pods created after the first ``since`` ones (those are kept)."""
        for ns, name in self.created[since:]:
            if self.emulator.store.get(ns, name) is not None:
                self.delete_pod(name, ns)
        del self.created[since:]


def start_k8s_api(tmp_dir: Path, image_map: Mapping[str, str] | None = None) -> K8sApi:
    """Start an emulator (images built if needed) and write its kubeconfig into ``tmp_dir``.

    Pod images map to local test images: ``busybox``, ``python``, ``shell-less`` by name,
    ``image_map`` entries (exact or without tag), and anything else to the python image."""
    os.environ.setdefault("DOCKER_HOST", "unix:///tmp/podsync-docker/docker.sock")
    available = set(ensure_test_images(REPO_ROOT))
    if BUSYBOX_IMAGE not in available:
        raise RuntimeError("no test image could be built (podsync-test-busybox)")
    python = PY_IMAGE if PY_IMAGE in available else BUSYBOX_IMAGE
    mapping = {"busybox": BUSYBOX_IMAGE, "python": python}
    if SHELL_LESS_IMAGE in available:
        mapping["shell-less"] = SHELL_LESS_IMAGE
    mapping.update(image_map or {})
    emulator = Emulator(image_map=mapping, default_image=python, local_images=available).start()
    kubeconfig = emulator.write_kubeconfig(tmp_dir / "kubeconfig")
    return K8sApi(emulator=emulator, kubeconfig_path=kubeconfig)

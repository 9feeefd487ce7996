"""The emulator's kubelet: turns pod objects into real Docker containers and back.

Owns: image mapping (any pod image string -> a local test image), starting one container per
pod container (``k8s_<ns>_<pod>_<container>``, ``--network none``), stopping them on delete,
and the test hooks that force a pod into Pending / ImagePullBackOff / CrashLoopBackOff or
restart a container. May import: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any

from .docker import INSTANCE_LABEL, KEEPALIVE, container_name, docker
from .pods import STATE_ANNOTATION, ContainerState, Obj, Pod, PodStore, now_iso

FORCEABLE_STATES = ("Pending", "ContainerCreating", "ImagePullBackOff", "CrashLoopBackOff")


def _strip_tag(image: str) -> str:
    image = image.split("@", 1)[0]
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


class Kubelet:
    """Runs the containers of the pods in one :class:`PodStore`."""

    def __init__(
        self,
        store: PodStore,
        instance: str,
        image_map: Mapping[str, str],
        default_image: str,
        local_images: set[str],
    ) -> None:
        self.store = store
        self.instance = instance
        self.image_map = dict(image_map)
        self.default_image = default_image
        self.local_images = local_images
        self.tasks: set[asyncio.Task[None]] = set()
        self._image_cmd: dict[str, bool] = {}
        self.events_proc: asyncio.subprocess.Process | None = None

    def local_image(self, image: str) -> str:
        """The local Docker image standing in for a pod's image string."""
        if image in self.image_map:
            return self.image_map[image]
        if _strip_tag(image) in self.image_map:
            return self.image_map[_strip_tag(image)]
        if image in self.local_images:
            return image
        return self.default_image

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def new_pod(self, manifest: Obj, created_mono: float) -> Pod:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        containers = [
            ContainerState(
                name=c["name"], image=c["image"], docker_name=container_name(ns, name, c["name"])
            )
            for c in manifest["spec"].get("containers") or []
        ]
        return Pod(manifest=manifest, containers=containers, created_mono=created_mono)

    async def _has_cmd(self, image: str) -> bool:
        if image not in self._image_cmd:
            res = await docker("image", "inspect", "--format", "{{json .Config.Cmd}}", image)
            self._image_cmd[image] = res.returncode == 0 and res.stdout.strip() not in (
                "null",
                "[]",
                "",
            )
        return self._image_cmd[image]

    async def _run_container(self, pod: Pod, spec: Obj, cs: ContainerState) -> str | None:
        """Start one container; returns an error text or None."""
        image = self.local_image(cs.image)
        args = ["run", "-d", "--network", "none", "--name", cs.docker_name]
        args += ["--label", f"{INSTANCE_LABEL}={self.instance}"]
        args += ["--label", f"io.kubernetes.pod.name={pod.name}"]
        if spec.get("workingDir"):
            args += ["-w", spec["workingDir"]]
        for env in spec.get("env") or []:
            args += ["-e", f"{env['name']}={env.get('value', '')}"]
        command = list(spec.get("command") or [])
        if command:
            args += ["--entrypoint", command[0]]
        args.append(image)
        if command:
            args += command[1:]
        args += list(spec.get("args") or [])
        if not command and not spec.get("args") and not await self._has_cmd(image):
            args += list(KEEPALIVE)
        await docker("rm", "-f", cs.docker_name)
        res = await docker(*args)
        if res.returncode != 0:
            return res.stderr.strip()
        inspect = await docker("inspect", "--format", "{{.Image}}", cs.docker_name)
        cs.image_id = f"docker-pullable://{_strip_tag(cs.image)}@{inspect.stdout.strip()}"
        return None

    async def start_pod(self, pod: Pod) -> None:
        """Start the pod's containers unless a test asked it to stay in some state."""
        forced = (pod.manifest["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
        if forced:
            self.force_state(pod, forced)
            return
        specs = {c["name"]: c for c in pod.manifest["spec"].get("containers") or []}
        for cs in pod.containers:
            err = await self._run_container(pod, specs[cs.name], cs)
            if pod.deleting:
                return
            if err is not None:
                cs.waiting_reason = "CreateContainerError"
                self.store.emit("MODIFIED", pod)
                return
            cs.running, cs.waiting_reason, cs.started_at = True, None, now_iso()
        pod.phase = "Running"
        self.store.emit("MODIFIED", pod)

    def force_state(self, pod: Pod, state: str) -> None:
        """Put a pod in one of :data:`FORCEABLE_STATES` (its containers stay as they are)."""
        if state not in FORCEABLE_STATES:
            raise ValueError(f"unknown forced state {state!r}")
        pod.unschedulable = state == "Pending"
        pod.phase = "Running" if state == "CrashLoopBackOff" else "Pending"
        for cs in pod.containers:
            cs.waiting_reason = None if state == "Pending" else state
            if state == "CrashLoopBackOff":
                cs.restart_count = max(cs.restart_count, 3)
        self.store.emit("MODIFIED", pod)

    async def resume(self, pod: Pod) -> None:
        """Undo :meth:`force_state`: start (or re-mark running) the pod's containers."""
        pod.unschedulable = False
        specs = {c["name"]: c for c in pod.manifest["spec"].get("containers") or []}
        for cs in pod.containers:
            state = await docker("inspect", "--format", "{{.State.Running}}", cs.docker_name)
            if state.stdout.strip() != "true":
                err = await self._run_container(pod, specs[cs.name], cs)
                if err is not None:
                    raise RuntimeError(err)
            cs.running, cs.waiting_reason, cs.started_at = True, None, now_iso()
        pod.phase = "Running"
        self.store.emit("MODIFIED", pod)

    async def restart_container(self, pod: Pod, name: str) -> None:
        """Kill one container and wait until the kubelet loop has restarted it."""
        cs = pod.container(name)
        if cs is None:
            raise KeyError(name)
        before = cs.restart_count
        await docker("kill", cs.docker_name)
        deadline = asyncio.get_running_loop().time() + 60
        while cs.restart_count == before and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    async def monitor(self) -> None:
        """Restart containers that die (restartPolicy Always), as a kubelet does: the pod
        goes not-ready with a terminated state, then runs again with restartCount + 1."""
        proc = await asyncio.create_subprocess_exec(
            "docker", "events", "--filter", f"label={INSTANCE_LABEL}={self.instance}",
            "--filter", "event=die",
            "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.events_proc = proc
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            name, _, code = line.decode().strip().partition(" ")
            self.spawn(self._on_die(name, int(code or "-1")))

    async def _on_die(self, docker_name: str, exit_code: int) -> None:
        found = [(p, c) for p in self.store.pods.values() for c in p.containers
                 if c.docker_name == docker_name]  # fmt: skip
        if not found:
            return
        pod, cs = found[0]
        if pod.deleting or not cs.running:
            return  # removed on purpose, or held in a forced state
        cs.running, cs.terminated = False, ("Error" if exit_code else "Completed", exit_code)
        self.store.emit("MODIFIED", pod)
        res = await docker("start", docker_name)
        if pod.deleting:
            return
        cs.terminated = None
        cs.restart_count += 1
        if res.returncode != 0:
            cs.waiting_reason = "CrashLoopBackOff"
        else:
            cs.running, cs.waiting_reason, cs.started_at = True, None, now_iso()
        self.store.emit("MODIFIED", pod)

    async def delete_pod(self, pod: Pod) -> None:
        """Stop and remove the pod's containers, then drop the pod (DELETED event)."""
        names = [c.docker_name for c in pod.containers]
        if names:
            await docker("rm", "-f", *names)
        self.store.remove(pod)

    async def exec_ready(self, pod: Pod, name: str) -> str | None:
        """None when ``name`` can be exec'ed into, else the API's error message."""
        cs = pod.container(name)
        if cs is None:
            return f"container {name} is not valid for pod {pod.name}"
        if not cs.running:
            return f'unable to upgrade connection: container not found ("{name}")'
        return None

"""The real single-node Kubernetes kit (``../shared/k8s`` beside the project) for tests.

Owns: where the kit and its state are, why it cannot be used (one line, for skip/fail), the
test images imported into its containerd, and :class:`Kube`, one namespace of that cluster
with the helpers tests use (pods, Deployments, kubectl, exec). May import: the standard
library and ``tests.support``. :class:`Podsync` runs the real CLI against such a namespace.

The tests use only the kit's own kubeconfig (``STATE_DIR/kubeconfig``, never the user's
``KUBECONFIG``) and its kubectl v1.36 (``STATE_DIR/bin/kubectl``). ``STATE_DIR`` is
``$PODSYNC_K8S_STATE_DIR``, else ``${TMPDIR:-/tmp}/podsync-k8s``, as in the kit's scripts;
the kit itself is ``$PODSYNC_K8S_KIT``, else ``../shared/k8s`` beside the project folder.
Images cannot be pulled there: the two test root filesystems of ``tests/images/build.sh
--rootfs`` are imported with the kit's ``image.sh`` under a tag that is the recipe's hash,
so a changed recipe gives new images and an unchanged one is imported once per cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "images" / "build.sh"
NAMESPACE_LABEL = "podsync-test=1"
#: Seconds a pod may take to become Ready (image already imported: ~1 s on a quiet machine).
READY_TIMEOUT = 120


def kit_dir() -> Path:
    """``$PODSYNC_K8S_KIT``, else ``shared/k8s`` beside the project folder (or beside a folder
    above it: a git worktree sits deeper than the clone CI runs)."""
    if os.environ.get("PODSYNC_K8S_KIT"):
        return Path(os.environ["PODSYNC_K8S_KIT"])
    for folder in REPO.parents:
        if (folder / "shared" / "k8s" / "up.sh").is_file():
            return folder / "shared" / "k8s"
    return REPO.parent / "shared" / "k8s"


def state_dir() -> Path:
    raw = os.environ.get("PODSYNC_K8S_STATE_DIR")
    return Path(raw) if raw else Path(os.environ.get("TMPDIR") or "/tmp") / "podsync-k8s"


def kit_kubeconfig() -> Path:
    return state_dir() / "kubeconfig"


def kubectl_path() -> Path:
    return state_dir() / "bin" / "kubectl"


@functools.cache
def unavailable_reason() -> str | None:
    """Why the kit's cluster cannot be used (one line), or None when its API answers."""
    config, kubectl = kit_kubeconfig(), kubectl_path()
    start = f"start it with {kit_dir() / 'up.sh'}"
    if not config.is_file() or not kubectl.is_file():
        return f"no Kubernetes kit is running (no {config}; {start})"
    try:
        ready = subprocess.run(
            [str(kubectl), "--kubeconfig", str(config), "--request-timeout=10s",
             "get", "--raw", "/readyz"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the Kubernetes kit in {state_dir()} does not answer ({exc}); {start}"
    if ready.stdout.strip() != b"ok":
        lines = (ready.stderr or ready.stdout).decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else "no output"
        return f"the Kubernetes kit in {state_dir()} does not answer ({why}); {start}"
    return None


# -- images ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Images:
    """Image names (as a pod spec writes them) of the test images in the kit's containerd."""

    py: str
    busybox: str
    shell_less: str
    #: The spec examples' images, as aliases: john/devbackend (python), busybox and
    #: john/debugger (busybox only), each with the recipe tag.
    aliases: Mapping[str, str] = field(default_factory=dict)


def _recipe() -> str:
    import hashlib

    return hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:16]


def _ctr(*args: str) -> subprocess.CompletedProcess[bytes]:
    sock = state_dir() / "containerd.sock"
    return subprocess.run(
        ["ctr", "--address", str(sock), "-n", "k8s.io", *args],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip


def _full(ref: str) -> str:
    """containerd's name for ``ref`` (what image.sh stores)."""
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    path = state_dir() / f".{name}.lock"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shell_less_rootfs(root: Path) -> None:
    """``/busybox`` and nothing else on PATH: no ``sh``, no ``python3`` (the runtime needs
    /proc, /sys, /dev, /tmp and /etc as mount points)."""
    for sub in ("proc", "sys", "dev", "tmp", "etc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    busybox = next(p for p in ("/bin/busybox", "/usr/bin/busybox") if Path(p).is_file())
    shutil.copy2(busybox, root / "busybox")


def _import(ref: str, rootfs: Path, cmd: Sequence[str], workdir: str) -> None:
    env = {
        **os.environ,
        "PODSYNC_IMAGE_CMD": json.dumps(list(cmd)),
        "PODSYNC_IMAGE_WORKDIR": workdir,
        "PODSYNC_K8S_STATE_DIR": str(state_dir()),
    }
    done = subprocess.run(
        ["bash", str(kit_dir() / "image.sh"), ref, str(rootfs)],
        capture_output=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"image.sh {ref} failed: {done.stderr.decode(errors='replace')}")


@functools.cache
def ensure_images() -> Images:
    """Import the test images (and the spec examples' aliases) unless already there."""
    tag = _recipe()
    images = Images(
        py=f"local/podsync-test-py:{tag}",
        busybox=f"local/podsync-test-busybox:{tag}",
        shell_less=f"local/podsync-test-shell-less:{tag}",
        aliases={
            "john/devbackend": f"john/devbackend:{tag}",
            "busybox": f"busybox:{tag}",
            "john/debugger": f"john/debugger:{tag}",
        },
    )
    wanted = {
        images.py: images.py,
        images.busybox: images.busybox,
        images.shell_less: images.shell_less,
        images.aliases["john/devbackend"]: images.py,
        images.aliases["busybox"]: images.busybox,
        images.aliases["john/debugger"]: images.busybox,
    }
    with _lock("podsync-test-images"):
        listed = _ctr("images", "ls", "-q")
        if listed.returncode != 0:
            raise RuntimeError(f"ctr images ls failed: {listed.stderr.decode(errors='replace')}")
        have = set(listed.stdout.decode().split())
        if all(_full(ref) in have for ref in wanted):
            return images
        with tempfile.TemporaryDirectory(prefix="podsync-rootfs-") as tmp:
            out = Path(tmp)
            built = subprocess.run(
                ["bash", str(BUILD_SCRIPT), "--rootfs", str(out)],
                capture_output=True, timeout=600, check=False,
            )  # fmt: skip
            if built.returncode != 0:
                raise RuntimeError(f"build.sh --rootfs failed: {built.stderr.decode()}")
            _shell_less_rootfs(out / "shell-less")
            init = ["/sbin/init"]
            _import(images.py, out / "py", init, "/app")
            _import(images.busybox, out / "busybox", init, "/app")
            _import(images.shell_less, out / "shell-less", ["/busybox", "sleep", "1000000"], "/")
        for alias, source in wanted.items():
            if alias != source:
                tagged = _ctr("images", "tag", "--force", _full(source), _full(alias))
                if tagged.returncode != 0:
                    raise RuntimeError(f"ctr images tag {alias}: {tagged.stderr.decode()}")
    return images


# -- one namespace ---------------------------------------------------------------------------
Obj = dict[str, Any]


def container(
    name: str,
    image: str,
    command: Sequence[str] | None = None,
    workdir: str | None = None,
) -> Obj:
    spec: Obj = {"name": name, "image": image, "imagePullPolicy": "Never"}
    if command is not None:
        spec["command"] = list(command)
    if workdir is not None:
        spec["workingDir"] = workdir
    return spec


def pod_spec(containers: Sequence[Obj], init: Sequence[Obj] = ()) -> Obj:
    spec: Obj = {
        # busybox init and sleep ignore SIGTERM: do not wait 30 s for them on deletion.
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": list(containers),
    }
    if init:
        spec["initContainers"] = list(init)
    return spec


@dataclass
class Kube:
    """One namespace of the kit's cluster, and a kubeconfig whose context uses it."""

    namespace: str
    kubeconfig: Path
    images: Images

    @property
    def env(self) -> dict[str, str]:
        """Environment for podsync and kubectl: this kubeconfig, the kit's kubectl first."""
        path = f"{kubectl_path().parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, input: bytes = b"", timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [str(kubectl_path()), "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)}: exit {done.returncode}: {done.stderr.decode()}"
            )
        return done

    def apply(self, obj: Obj) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj).encode(), check=True)

    def pod(
        self,
        name: str,
        containers: Sequence[Obj] | None = None,
        labels: Mapping[str, str] | None = None,
        init: Sequence[Obj] = (),
        wait: bool = True,
    ) -> str:
        """Create a bare pod (one python container ``main`` by default); its name."""
        spec = pod_spec(containers or [container("main", self.images.py)], init)
        meta = {"name": name, "labels": dict(labels or {"app": name})}
        self.apply({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        if wait:
            self.wait_ready(name)
        return name

    def deployment(
        self,
        name: str,
        labels: Mapping[str, str],
        containers: Sequence[Obj] | None = None,
        replicas: int = 1,
    ) -> None:
        """Create a Deployment and wait until ``replicas`` of its pods are Ready."""
        spec = pod_spec(containers or [container("main", self.images.py)])
        self.apply({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}},
        })  # fmt: skip
        self.kubectl("rollout", "status", f"deployment/{name}", "--timeout=120s", check=True)

    def wait_ready(self, pod: str, timeout: int = READY_TIMEOUT) -> None:
        self.kubectl(
            "wait", "--for=condition=Ready", f"pod/{pod}", f"--timeout={timeout}s",
            timeout=timeout + 30, check=True,
        )  # fmt: skip

    def pods(self, selector: str) -> list[Obj]:
        """Pods matching the label ``selector``, as API JSON."""
        out = self.kubectl("get", "pods", "-l", selector, "-o", "json", check=True)
        return list(json.loads(out.stdout)["items"])

    def ready_pods(self, selector: str) -> list[str]:
        """Names of the Ready, not terminating pods matching ``selector``."""
        names = []
        for obj in self.pods(selector):
            conds = obj.get("status", {}).get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
            if ready and not obj["metadata"].get("deletionTimestamp"):
                names.append(obj["metadata"]["name"])
        return names

    def exec(
        self, pod: str, argv: Sequence[str], container: str | None = None, input: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        c = ["-c", container] if container else []
        i = ["-i"] if input else []
        return self.kubectl("exec", *i, pod, *c, "--", *argv, input=input)

    def sh(self, pod: str, script: str, container: str | None = None) -> None:
        done = self.exec(pod, ["sh", "-c", script], container)
        assert done.returncode == 0, done.stderr.decode()

    def cat(self, pod: str, path: str, container: str | None = None) -> bytes | None:
        """The file's content in the container, None when it cannot be read."""
        done = self.exec(pod, ["cat", path], container)
        return done.stdout if done.returncode == 0 else None

    def delete_pod(self, name: str, wait: bool = True) -> None:
        self.kubectl("delete", "pod", name, f"--wait={str(wait).lower()}", check=True)


def open_namespace(tmp: Path) -> Kube:
    """A fresh namespace (labelled podsync-test=1) and a kubeconfig copy using it."""
    images = ensure_images()
    namespace = f"podsync-test-{uuid.uuid4().hex[:8]}"
    config = tmp / "kubeconfig"
    shutil.copyfile(kit_kubeconfig(), config)
    kube = Kube(namespace, config, images)
    kube.kubectl("create", "namespace", namespace, check=True)
    kube.kubectl("label", "namespace", namespace, NAMESPACE_LABEL, check=True)
    kube.kubectl("config", "set-context", "--current", f"--namespace={namespace}", check=True)
    return kube


def close_namespace(kube: Kube) -> None:
    """Delete the namespace (its pods go with it); do not wait for the pods to end."""
    kube.kubectl("delete", "namespace", kube.namespace, "--wait=false")


async def pipe_through(channel: Any, data: bytes, chunk: int = 1 << 20) -> bytes:
    """Write ``data`` and read the echo concurrently (so neither side fills up)."""
    out = bytearray()

    async def feed() -> None:
        for at in range(0, len(data), chunk):
            await channel.write(data[at : at + chunk])
        await channel.close_stdin()

    async def drain() -> None:
        while block := await channel.read(1 << 20):
            out.extend(block)

    await asyncio.gather(feed(), drain())
    return bytes(out)


class Podsync:
    """A `podsync ARGS` process whose kubeconfig's context is the test's namespace."""

    def __init__(self, kube: Kube, cwd: Path, *args: str, wait: float = 60) -> None:
        env = {**kube.env, "PYTHONUNBUFFERED": "1", "PODSYNC_POD_WAIT_SECONDS": str(wait)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "podsync", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 90, count: int = 1) -> None:
        wait_until(
            lambda: self.output.count(needle) >= count or self.proc.poll() is not None,
            timeout,
            message=f"{needle!r} not printed:\n{self.output}",
        )
        assert self.output.count(needle) >= count, f"exited {self.proc.returncode}:\n{self.output}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"podsync did not stop on SIGINT:\n{self.output}") from None
        return self.proc.returncode

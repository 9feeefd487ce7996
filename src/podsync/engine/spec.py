"""What to sync: the contract between the CLI/config layer and the engine.

Owns: :class:`SyncSpec`, :class:`TargetSpec` and :class:`UploadCommand`. May import: the
standard library only.
The CLI builds these from flags (``podsync sync``) or from ``dev.sync[*]`` (``podsync dev``);
the engine never reads devspace.yaml itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TargetKind = Literal["local", "docker", "ssh", "kubernetes"]


@dataclass(frozen=True)
class TargetSpec:
    """Where the far side lives.

    - ``local``: ``local_dir`` is a plain folder on this machine (agent runs as a subprocess).
    - ``docker``: ``container`` is a Docker container name or id (``docker exec -i``).
    - ``ssh``: ``host`` is ``[user@]host`` (``ssh host``).
    - ``kubernetes``: ``pod`` or ``label_selector`` or ``image_name`` (exactly one), with
      optional ``container``, ``namespace``, ``kube_context``, ``pick``; ``image_ref`` is the
      image string resolved from ``images[image_name].image`` by the config layer.
    """

    kind: TargetKind
    local_dir: Path | None = None
    container: str | None = None
    host: str | None = None
    pod: str | None = None
    label_selector: dict[str, str] | None = None
    image_name: str | None = None
    image_ref: str | None = None
    namespace: str | None = None
    kube_context: str | None = None
    pick: bool = False

    @property
    def noun(self) -> str:
        """What the far side is called in messages: a container, or a folder elsewhere."""
        if self.kind in ("docker", "kubernetes"):
            return "container"
        return "remote folder" if self.kind == "ssh" else "target folder"

    def describe(self) -> str:
        if self.kind == "local":
            return f"local:{self.local_dir}"
        if self.kind == "docker":
            return f"docker:{self.container}"
        if self.kind == "ssh":
            return f"ssh:{self.host}"
        if self.pod:
            what = f"pod {self.pod}"
        elif self.label_selector:
            what = "pods " + ",".join(f"{k}={v}" for k, v in sorted(self.label_selector.items()))
        elif self.image_name:
            what = f"image {self.image_name}"
        else:
            what = "any pod (--pick)"
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"kubernetes:{ns}{what}" + (f":{self.container}" if self.container else "")


@dataclass(frozen=True)
class UploadCommand:
    """One ``onUpload.exec`` item: ``command`` runs through ``sh -c`` in the container folder
    after a batch uploaded (wrote or deleted in the container) a path that ``on_change``
    matches. ``on_change`` holds gitignore patterns relative to the sync root, already in
    gitignore form (the config's ``./x`` is ``/x`` here); None: after every such batch."""

    command: str
    on_change: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SyncSpec:
    """One sync pair with every dev.sync option resolved to its effective value.

    ``local_root`` is absolute. ``container_path`` None means the container's WORKDIR.
    Bandwidth limits are bytes/s (config KB/s x 1024), None = unlimited.
    ``state_dir`` is the project's ``.devspace`` folder (logs, status, conflicts, trash).
    ``on_upload``: the commands of ``onUpload.exec``, in the order written.
    """

    name: str
    local_root: Path
    target: TargetSpec
    state_dir: Path
    container_path: str | None = None
    exclude: tuple[str, ...] = ()
    upload_exclude: tuple[str, ...] = ()
    download_exclude: tuple[str, ...] = ()
    download_on_initial_sync: bool = False
    wait_initial_sync: bool = False
    upload_only: bool = False
    download_only: bool = False
    bandwidth_upload: int | None = None
    bandwidth_download: int | None = None
    agent: Literal["auto", "python", "shell"] = "auto"
    extra: dict[str, str] = field(default_factory=dict)
    on_upload: tuple[UploadCommand, ...] = ()

    @property
    def launch_root(self) -> str:
        """The root an installed agent is started with in a container: the container path,
        or "." (the exec's working directory, which runtimes set to the WORKDIR)."""
        return self.container_path or "."


@dataclass(frozen=True)
class RunOptions:
    """How to run a set of syncs (flags that are not per-sync)."""

    watch: bool = True
    dry_run: bool = False
    verbose: bool = False
    #: podsync dev --terminal: a shell in the first entry's container instead of logs.
    terminal: bool = False
    #: Forget the state saved by earlier runs: the spec's initial sync runs again.
    reset_state: bool = False
    #: --all-replicas: every pod a Kubernetes selection matches gets the local changes
    #: (engine.replicas); downloads come from one primary pod only.
    all_replicas: bool = False

"""Validating ``podsync sync`` flags and turning them into a SyncSpec.

Owns: the rules between flags (exactly one target, Kubernetes-only flags, upload/download-only),
``k=v`` parsing, and the on-demand SyncSpec. Raises :class:`UsageError` (exit 2) whose message
names the flag. May import: podsync.config, podsync.engine.spec, podsync.errors,
podsync.transport.ssh (the --ssh URL's syntax).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from podsync.config.checks import check_container_path, check_pattern
from podsync.engine.spec import SyncSpec, TargetSpec
from podsync.errors import UsageError

if TYPE_CHECKING:
    from podsync.config.models import ProjectConfig

KB = 1024
TARGET_FLAGS = ("--pod", "--label-selector", "--image-name", "--docker", "--ssh", "--local-target")
KUBE_ONLY_FLAGS = ("--container", "--namespace", "--kube-context", "--pick", "--all-replicas")


def parse_label_selector(value: str, flag: str = "--label-selector") -> dict[str, str]:
    """``app=web,tier=api`` -> ``{"app": "web", "tier": "api"}``."""
    labels: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f'{flag}: "{part.strip()}" is not key=value; write e.g. app=web,tier=api'
            )
        labels[key.strip()] = val.strip()
    return labels


def split_patterns(values: list[str] | None, flag: str) -> tuple[str, ...]:
    """Repeatable pattern flags; each value may also hold a comma-separated list (as DevSpace)."""
    patterns = tuple(p.strip() for value in values or [] for p in value.split(",") if p.strip())
    for pattern in patterns:
        problem = check_pattern((flag,), pattern)
        if problem is not None:
            raise UsageError(f"{flag}: {problem[2]}")
    return patterns


@dataclass(frozen=True)
class SyncFlags:
    """The raw flags of ``podsync sync`` (as typed), before any rule is applied."""

    local_path: str = "."
    container_path: str | None = None
    pod: str | None = None
    label_selector: str | None = None
    image_name: str | None = None
    docker: str | None = None
    ssh: str | None = None
    local_target: str | None = None
    container: str | None = None
    namespace: str | None = None
    kube_context: str | None = None
    pick: bool = False
    exclude: tuple[str, ...] = ()
    upload_exclude: tuple[str, ...] = ()
    download_exclude: tuple[str, ...] = ()
    download_on_initial_sync: bool = True
    upload_only: bool = False
    download_only: bool = False
    bandwidth_upload: int | None = None
    bandwidth_download: int | None = None
    agent: Literal["auto", "python", "shell"] = "auto"
    all_replicas: bool = False


def _no_dash(flag: str, value: str, what: str) -> str:
    # a value starting with "-" would be read as an option by docker/ssh/kubectl
    if not value.strip() or value.startswith("-") or any(c.isspace() for c in value):
        raise UsageError(f'{flag}: "{value}" is not a valid {what}')
    return value


def build_target(flags: SyncFlags, cfg: ProjectConfig | None) -> TargetSpec:
    """The one target the flags name; every inconsistency is a UsageError naming flags."""
    given = {
        "--pod": flags.pod,
        "--label-selector": flags.label_selector,
        "--image-name": flags.image_name,
        "--docker": flags.docker,
        "--ssh": flags.ssh,
        "--local-target": flags.local_target,
    }
    chosen = [name for name, value in given.items() if value is not None]
    if not chosen and flags.pick:  # --pick alone: any pod and container of the namespace
        return _kube_target(flags, cfg)
    if not chosen:
        raise UsageError("no target: pass exactly one of " + ", ".join(TARGET_FLAGS))
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)}: pass only one target")
    flag = chosen[0]
    kube = flag in ("--pod", "--label-selector", "--image-name")
    extra = {
        "--container": flags.container,
        "--namespace": flags.namespace,
        "--kube-context": flags.kube_context,
        "--pick": flags.pick or None,
        "--all-replicas": flags.all_replicas or None,
    }
    misplaced = [name for name, value in extra.items() if value is not None]
    if misplaced and not kube:
        raise UsageError(
            f"{misplaced[0]}: only applies to Kubernetes targets "
            f"(--pod, --label-selector, --image-name), not {flag}"
        )
    if flag == "--docker":
        return TargetSpec(kind="docker", container=_no_dash(flag, flags.docker or "", "container"))
    if flag == "--ssh":
        host = _no_dash(flag, flags.ssh or "", "[user@]host")
        from podsync.transport.ssh import parse_destination

        parse_destination(host)  # a malformed ssh:// URL is a user mistake: exit 2, now
        return TargetSpec(kind="ssh", host=host)
    if flag == "--local-target":
        return TargetSpec(kind="local", local_dir=_target_dir(flag, flags.local_target or ""))
    return _kube_target(flags, cfg)


def _kube_target(flags: SyncFlags, cfg: ProjectConfig | None) -> TargetSpec:
    if flags.all_replicas and flags.pick:
        raise UsageError("--all-replicas and --pick: pass at most one of them")
    selector = parse_label_selector(flags.label_selector) if flags.label_selector else None
    image_ref = None
    if flags.image_name is not None:
        if cfg is None:
            raise UsageError(
                "--image-name: needs devspace.yaml (its images section); run in the project "
                "folder or pass --config FILE"
            )
        if flags.image_name not in cfg.images:
            known = ", ".join(cfg.images) or "none"
            raise UsageError(
                f'--image-name: image "{flags.image_name}" is not defined under images in '
                f"{cfg.display} (defined: {known})"
            )
        image_ref = cfg.images[flags.image_name].image
    pod = _no_dash("--pod", flags.pod, "pod name") if flags.pod is not None else None
    return TargetSpec(
        kind="kubernetes",
        pod=pod,
        label_selector=selector,
        image_name=flags.image_name,
        image_ref=image_ref,
        container=flags.container,
        namespace=flags.namespace,
        kube_context=flags.kube_context,
        pick=flags.pick,
    )


def _existing_dir(flag: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise UsageError(f'{flag}: "{value}" {state}; pass an existing folder')
    return path.resolve()


def _target_dir(flag: str, value: str) -> Path:
    """The far-side folder: created by the sync when missing (like a containerPath), as long
    as its parent exists (a typo in a parent is more likely than a wish for a deep tree)."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f'{flag}: "{value}" is not a folder')
    if not path.exists() and not path.parent.is_dir():
        raise UsageError(f'{flag}: the parent folder of "{value}" does not exist')
    return path.resolve()


def build_sync_spec(flags: SyncFlags, cfg: ProjectConfig | None, state_dir: Path) -> SyncSpec:
    """The SyncSpec for ``podsync sync`` (its flags validated, paths made absolute)."""
    if flags.upload_only and flags.download_only:
        raise UsageError("--upload-only and --download-only: pass at most one of them")
    if flags.all_replicas and flags.download_only:
        raise UsageError("--all-replicas and --download-only: replicas only receive uploads")
    target = build_target(flags, cfg)
    problem = check_container_path(("--container-path",), flags.container_path)
    if problem is not None:
        raise UsageError(f"--container-path: {problem[2]}")
    if target.kind == "local" and flags.container_path is not None:
        raise UsageError("--container-path: does not apply to --local-target (DIR is the far side)")
    return SyncSpec(
        name="sync",
        local_root=_existing_dir("--local-path", flags.local_path),
        target=target,
        state_dir=state_dir,
        container_path=flags.container_path,
        exclude=split_patterns(list(flags.exclude), "--exclude"),
        upload_exclude=split_patterns(list(flags.upload_exclude), "--upload-exclude"),
        download_exclude=split_patterns(list(flags.download_exclude), "--download-exclude"),
        download_on_initial_sync=flags.download_on_initial_sync,
        upload_only=flags.upload_only,
        download_only=flags.download_only,
        bandwidth_upload=_kb(flags.bandwidth_upload, "--bandwidth-upload"),
        bandwidth_download=_kb(flags.bandwidth_download, "--bandwidth-download"),
        agent=flags.agent,
    )


def _kb(value: int | None, flag: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value <= 0:
        raise UsageError(f"{flag}: must be a positive whole number of KB/s, got {value}")
    return value * KB

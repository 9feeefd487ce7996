"""From validated dev.sync entries to the engine's SyncSpecs (``podsync dev``).

Owns: ``to_sync_specs`` (names, absolute local roots, Kubernetes target, KB/s -> bytes/s,
onUpload commands).
May import: podsync.config.models, podsync.engine.spec, the standard library.

It lives with the CLI, not in ``podsync.config``: the config package is data (devspace.yaml
read and validated) and imports nothing from the engine; the CLI is the one layer that knows
both sides, as it does for ``podsync sync``'s flags (``cli.flags``).
"""

from __future__ import annotations

from pathlib import Path

from podsync.config.models import ProjectConfig, SyncConfig
from podsync.engine.spec import SyncSpec, TargetSpec, UploadCommand

#: The spec's unit: bandwidthLimits are KB/s with 1 KB = 1024 bytes.
KB = 1024


def kb_to_bytes(kb: int | None) -> int | None:
    return None if kb is None else kb * KB


def target_of(cfg: ProjectConfig, entry: SyncConfig) -> TargetSpec:
    """The Kubernetes target of one entry; ``image_ref`` is resolved from ``images``."""
    image_ref = None
    if entry.image_name is not None and entry.image_name in cfg.images:
        image_ref = cfg.images[entry.image_name].image
    return TargetSpec(
        kind="kubernetes",
        label_selector=dict(entry.label_selector) if entry.label_selector else None,
        image_name=entry.image_name,
        image_ref=image_ref,
        namespace=entry.namespace,
        container=entry.container_name,
    )


def upload_commands(entry: SyncConfig) -> tuple[UploadCommand, ...]:
    """``onUpload.exec`` (validated: every command is set) with its onChange anchored."""
    items = entry.on_upload.exec if entry.on_upload is not None else []
    return tuple(UploadCommand(i.command or "", i.on_change_patterns()) for i in items)


def to_sync_specs(cfg: ProjectConfig, state_dir: Path) -> list[SyncSpec]:
    """One SyncSpec per ``dev.sync`` entry, named ``sync-0``, ``sync-1``... in file order."""
    specs: list[SyncSpec] = []
    for index, entry in enumerate(cfg.sync):
        limits = entry.bandwidth_limits
        specs.append(
            SyncSpec(
                name=f"sync-{index}",
                local_root=cfg.local_path(entry),
                target=target_of(cfg, entry),
                state_dir=state_dir,
                container_path=entry.container_path,
                exclude=tuple(entry.exclude_paths),
                upload_exclude=tuple(entry.upload_exclude_paths),
                download_exclude=tuple(entry.download_exclude_paths),
                download_on_initial_sync=entry.download_on_initial_sync,
                wait_initial_sync=entry.wait_initial_sync,
                bandwidth_upload=kb_to_bytes(limits.upload if limits else None),
                bandwidth_download=kb_to_bytes(limits.download if limits else None),
                on_upload=upload_commands(entry),
            )
        )
    return specs

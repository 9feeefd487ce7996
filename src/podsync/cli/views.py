"""Terminal output of ``list sync`` and ``status sync``.

Owns: how configured and running syncs look (rich tables, JSON). May import: rich,
podsync.core, podsync.config.models, podsync.engine.status.

Table cells are plain ``Text`` built with ``core.paths.printable``: values come from the
config or the status file (paths, messages naming files), and neither a control character,
an undecodable byte nor a ``[tag]`` in them may break or restyle the output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from podsync.core.paths import printable
from podsync.engine.status import StatusFile, SyncStatus

if TYPE_CHECKING:
    from podsync.config.models import ProjectConfig, SyncConfig


def selector_text(entry: SyncConfig) -> str:
    if entry.image_name is not None:
        return f"imageName: {entry.image_name}"
    lines = [f"{k}={v}" for k, v in (entry.label_selector or {}).items()]
    if entry.container_name:
        lines.append(f"container: {entry.container_name}")
    if entry.namespace:
        lines.append(f"namespace: {entry.namespace}")
    return "\n".join(lines)


def excludes_text(entry: SyncConfig) -> str:
    parts = list(entry.exclude_paths)
    parts += [f"upload: {p}" for p in entry.upload_exclude_paths]
    parts += [f"download: {p}" for p in entry.download_exclude_paths]
    return "\n".join(parts) or "-"


def list_sync(cfg: ProjectConfig, console: Console) -> None:
    """One row per dev.sync entry, or a hint when there is none."""
    if not cfg.sync:
        console.print(
            f"No sync paths are configured in {printable(cfg.display)}; add one with "
            "`podsync add sync --local=PATH --container=PATH`.",
            soft_wrap=True,
            markup=False,
        )
        return
    table = Table(title=f"dev.sync in {cfg.display}")
    table.add_column("#", no_wrap=True)
    table.add_column("Selector", overflow="fold", min_width=20)
    table.add_column("Local", overflow="fold", min_width=6)
    table.add_column("Container", overflow="fold", min_width=9)
    table.add_column("Excludes", overflow="fold", min_width=14)
    for index, entry in enumerate(cfg.sync):
        table.add_row(
            *cells(
                str(index),
                selector_text(entry),
                entry.local_sub_path,
                entry.container_path or "(WORKDIR)",
                excludes_text(entry),
            )
        )
    console.print(table)


def cells(*values: str) -> list[Text]:
    """Table cells shown as written: escaped per line, never read as rich markup."""
    return [Text("\n".join(printable(line) for line in value.split("\n"))) for value in values]


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"  # pragma: no cover - loop always returns


def state_text(sync: SyncStatus) -> str:
    text: str = sync.state
    if sync.state in ("initial sync", "resuming") and sync.progress is not None:
        text += f" {sync.progress * 100:.0f}%"
    if sync.message:
        text += f": {sync.message}"
    return text


def activity_text(sync: SyncStatus) -> str:
    if not sync.last_activity:
        return "-"
    when = sync.last_activity_time or ""
    clock = when[11:19] if len(when) >= 19 else when
    return f"{clock} {sync.last_activity}".strip()


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def totals_text(sync: SyncStatus) -> str:
    return (
        f"↑ {_files(sync.uploaded_files)} {human_bytes(sync.uploaded_bytes)}, "
        f"↓ {_files(sync.downloaded_files)} {human_bytes(sync.downloaded_bytes)}"
    )


def _ms(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def latency_text(sync: SyncStatus) -> str:
    """p50/p95 of each direction in ms (``engine.latency``): "↑ 12/30" per line, "-" before
    the first change is measured."""
    figures = sync.latency if isinstance(sync.latency, dict) else {}
    lines = []
    for arrow, direction in (("↑", "up"), ("↓", "down")):
        one = figures.get(direction)
        if not isinstance(one, dict) or not one.get("count"):
            continue
        p50, p95 = _ms(one.get("p50_ms")), _ms(one.get("p95_ms"))
        if p50 is not None and p95 is not None:
            lines.append(f"{arrow} {p50}/{p95}")
    return "\n".join(lines) or "-"


def show_status(status: StatusFile | None, folder: Path, console: Console) -> None:
    if status is None:
        console.print(
            f"No sync is running in {printable(str(folder))} (start one with `podsync dev` or "
            "`podsync sync`).",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    table = Table(title=f"podsync (pid {status.pid}, updated {status.updated})")
    for column in ("Sync", "Local ↔ Remote", "State", "Conflicts", "Last activity", "Totals"):
        table.add_column(column, overflow="fold")
    table.add_column("Latency\np50/p95\n(ms)", overflow="fold", min_width=8)
    for sync in status.syncs:
        table.add_row(
            *cells(
                sync.name + (f" ({sync.role})" if sync.role else ""),
                f"{sync.local} ↔ {sync.remote}",
                state_text(sync),
                str(sync.conflicts),
                activity_text(sync),
                totals_text(sync),
                latency_text(sync),
            )
        )
    console.print(table)


def status_json(status: StatusFile | None) -> str:
    if status is None:
        return json.dumps({"running": False, "syncs": []}, indent=2)
    return json.dumps({"running": True, **status.to_json()}, indent=2, sort_keys=True)

"""``podsync conflicts`` (list, ``--json``), ``podsync conflicts resolve``, and the unresolved
count ``podsync status sync`` shows.

Owns: how conflicts look on the terminal and in JSON, which records PATH|GLOB arguments
select, and the resolve command's rules (``--keep``, ``--all``). May import: typer, rich (lazily),
``podsync.cli.common``, ``podsync.cli.views``, ``podsync.engine.conflicts``,
``podsync.engine.resolve``, ``podsync.engine.status``, ``podsync.errors``.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from podsync.cli.common import COMMON, ConfigOpt, examples, project_folder, state_dir
from podsync.errors import UsageError

if TYPE_CHECKING:
    from podsync.engine.conflicts import ConflictRecord, ConflictStore, Version

RESOLVE_HINT = "Resolve with `podsync conflicts resolve PATH|GLOB... --keep local|container`"

app = typer.Typer(
    help="List unresolved conflicts, or resolve them.",
    invoke_without_command=True,
    **COMMON,
)


class Keep(StrEnum):
    local = "local"
    container = "container"


def _store(config: Path | None) -> ConflictStore:
    from podsync.engine.conflicts import ConflictStore

    return ConflictStore(state_dir(config) / "conflicts")


@app.callback(
    invoke_without_command=True,
    epilog=examples(
        "podsync conflicts",
        "podsync conflicts --json",
        "podsync conflicts resolve src/app.py --keep container",
        "podsync conflicts resolve --all --keep local",
    ),
)
def conflicts_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Show one row per unresolved conflict: the path, when it happened, both versions (size,
    mtime) and where each one is now."""
    if ctx.invoked_subcommand is not None:
        return
    folder = project_folder(config)
    store = _store(config)
    store.prune_settled()
    records = store.records()
    if as_json:
        typer.echo(json.dumps({"conflicts": [_as_json(r, folder) for r in records]}, indent=2))
        return
    if not records:
        typer.echo(f"No unresolved conflicts in {folder}.")
        return
    _show(records, folder)


@app.command(
    "resolve",
    short_help="Keep the local or the container version of conflicts.",
    epilog=examples(
        "podsync conflicts resolve src/app.py --keep container",
        "podsync conflicts resolve 'src/*.py' --keep local",
        "podsync conflicts resolve --all --keep container",
    ),
)
def resolve_command(
    keep: Annotated[
        Keep,
        typer.Option(
            "--keep",
            metavar="local|container",
            help="The version to keep; the other goes to .devspace/trash/.",
            show_default=False,
        ),
    ],
    paths: Annotated[
        list[str] | None,
        typer.Argument(metavar="PATH|GLOB", show_default=False, hidden=True),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every unresolved conflict.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Keep one version of each conflict named by PATH (a file, or a folder holding conflicts;
    relative to the sync folder or to this one) or GLOB (quoted), or of all of them.

    \b
    --keep container: the container's version is put in
      place locally and the local one goes to the trash
      (.devspace/trash/); a running sync uploads it.
    --keep local: the saved copy goes to the trash, and
      the container gets the local version.
    Works whether a sync runs or not.
    """
    from podsync.engine.resolve import ResolveError, resolve

    if all_ and paths:
        raise UsageError("--all: pass either --all or PATH|GLOB arguments, not both")
    if not all_ and not paths:
        raise UsageError("conflicts resolve: pass PATH|GLOB... or --all")
    folder = project_folder(config)
    store = _store(config)
    records = store.records()
    chosen = records if all_ else select(records, paths or [], folder)
    if not chosen:
        typer.echo(f"No unresolved conflicts in {folder}.")
        return
    failed: list[str] = []
    for record in chosen:
        try:
            done = resolve(store, record, keep.value, state_dir(config) / "trash")
        except ResolveError as err:
            failed.append(str(err))
            continue
        typer.echo(done.message)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise ResolveError(f"{failed[0]}{more}")


def shown_path(record: ConflictRecord, folder: Path) -> str:
    """The path as the user types it: relative to the project folder when inside it."""
    full = os.path.join(record.root, *record.path.split("/"))
    rel = os.path.relpath(full, folder)
    return full if rel.startswith("..") else rel


def select(
    records: list[ConflictRecord], patterns: list[str], folder: Path
) -> list[ConflictRecord]:
    """Records matched by any pattern (a path, a folder holding conflicts, or a glob), each
    relative to the sync folder, the project folder or the current folder, or absolute. A
    pattern that matches nothing is a usage error (nothing is resolved then)."""
    chosen: dict[str, ConflictRecord] = {}
    here = Path.cwd()
    for pattern in patterns:
        wants = {_normal(pattern, folder)}
        if not os.path.isabs(pattern) and here.resolve() != folder:
            wants.add(_normal(os.path.join(here, pattern), folder))  # relative to this folder
        hits = [
            r for r in records if any(_match(c, want) for c in _names(r, folder) for want in wants)
        ]
        if not hits:
            raise UsageError(
                f'conflicts resolve: "{pattern}" matches no unresolved conflict '
                "(see `podsync conflicts`)"
            )
        chosen.update((r.key, r) for r in hits)
    return sorted(chosen.values(), key=lambda r: (r.root, r.path))


def _normal(pattern: str, folder: Path) -> str:
    text = pattern.rstrip("/") or "/"
    if os.path.isabs(text):
        text = os.path.relpath(text, folder)
    return text if any(c in text for c in "*?[") else os.path.normpath(text)


def _names(record: ConflictRecord, folder: Path) -> set[str]:
    return {record.path, os.path.relpath(record.local_file, folder)}


def _match(name: str, want: str) -> bool:
    return name == want or name.startswith(want + "/") or fnmatch.fnmatchcase(name, want)


# -- showing ----------------------------------------------------------------------------------
def _clock(mtime_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(mtime_ns / 1e9)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _when(iso: str) -> str:
    try:
        moment = datetime.datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _version_text(version: Version | None) -> str:
    from podsync.core.plan import format_size

    if version is None:
        return "absent"
    return f"{format_size(version.size)}, modified {_clock(version.mtime_ns)}"


def _local_where(record: ConflictRecord) -> str:
    if record.local is None:
        return "deleted locally"
    return "in place" + (", also in the container" if record.local_in_container else "")


def _container_where(record: ConflictRecord, folder: Path) -> str:
    copies = record.copies()
    if copies:
        rel = os.path.relpath(copies[0], folder)
        where = f"saved as {copies[0] if rel.startswith('..') else rel}"
        if len(copies) > 1:
            where += f" (and {len(copies) - 1} earlier version(s) of it)"
    else:
        where = "its saved copy is gone"
    return ("still in the container, " if record.in_container else "") + where


def _entry_lines(record: ConflictRecord, folder: Path, width: int) -> list[str]:
    """One entry: the path, then when and why, and each version (size, mtime, where)."""
    import textwrap

    rows = [
        ("found", f"{_when(record.when)}: {record.reason}"),
        ("local", f"{_version_text(record.local)}; {_local_where(record)}"),
        ("container", f"{_version_text(record.container)}; {_container_where(record, folder)}"),
    ]
    lines = [shown_path(record, folder)]
    for label, text in rows:
        lines += textwrap.wrap(
            text,
            width=max(width, 40),
            initial_indent=f"  {label:<10} ",
            subsequent_indent=" " * 13,
            break_long_words=False,
            break_on_hyphens=False,
        )
    return lines


def _show(records: list[ConflictRecord], folder: Path) -> None:
    import shutil

    width = shutil.get_terminal_size().columns
    lines = [f"{len(records)} unresolved conflict(s) in {folder}:"]
    for record in records:
        lines += ["", *_entry_lines(record, folder, width)]
    lines += ["", RESOLVE_HINT + "."]
    typer.echo("\n".join(lines))


def _version_json(version: Version | None) -> dict[str, Any] | None:
    if version is None:
        return None
    mtime = datetime.datetime.fromtimestamp(version.mtime_ns / 1e9, datetime.UTC)
    return {**version.to_json(), "mtime": mtime.isoformat(timespec="milliseconds")}


def _as_json(record: ConflictRecord, folder: Path) -> dict[str, Any]:
    copies = [str(c) for c in record.copies()]
    local = _version_json(record.local)
    container = _version_json(record.container)
    if local is not None:
        local.update(path=str(record.local_file), in_container=record.local_in_container)
    if container is not None:
        container.update(
            saved=copies[0] if copies else None,
            earlier=copies[1:],
            in_container=record.in_container,
        )
    return {
        "path": shown_path(record, folder),
        "sync_path": record.path,
        "local_root": record.root,
        "when": record.when,
        "reason": record.reason,
        "local": local,
        "container": container,
    }


# -- status sync --------------------------------------------------------------------------
def show_status(config: Path | None, as_json: bool) -> None:
    """``podsync status sync``: the status file, each sync's Conflicts column replaced by its
    count of unresolved conflicts (records the user has not resolved yet)."""
    import dataclasses

    from podsync.cli import views
    from podsync.engine.status import StatusFile, read_status, status_path

    folder = project_folder(config)
    counts = _store(config).counts()
    status = read_status(status_path(state_dir(config)))
    if status is not None:
        rows = [dataclasses.replace(s, conflicts=counts.get(s.local, 0)) for s in status.syncs]
        status = StatusFile(status.pid, status.updated, rows)
    total = sum(counts.values())
    if as_json:
        data = json.loads(views.status_json(status))
        data["unresolved_conflicts"] = total
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from rich.console import Console

    console = Console()
    views.show_status(status, folder, console)
    if total and status is None:
        console.print(f"{total} unresolved conflict(s): see `podsync conflicts`.", markup=False)

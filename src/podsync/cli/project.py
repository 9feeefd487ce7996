"""``podsync add sync``, ``podsync list sync`` and ``podsync status sync``: the commands that
read or edit the project's devspace.yaml, or report on the syncs running in it.

Owns: the ``add``, ``list`` and ``status`` command groups, their flags and help. May import:
typer, ``podsync.config``, ``podsync.cli.common`` and ``podsync.cli.conflicts``; rich,
``podsync.cli.flags`` and ``podsync.cli.views`` lazily (see ``cli.app`` on lazy imports).
"""

from __future__ import annotations

from typing import Annotated

import typer

from podsync import config as cfgmod
from podsync.cli import conflicts as conflicts_cli
from podsync.cli.common import COMMON, DEFAULT_CONFIG, ConfigOpt, examples

add_app = typer.Typer(
    help="Add configuration to devspace.yaml.",
    epilog=examples(
        "podsync add sync --local=src --container=/app/src",
        "podsync add sync --local=. --container=/srv -e logs/",
    ),
    no_args_is_help=True,
    **COMMON,
)
list_app = typer.Typer(
    help="List configuration from devspace.yaml.",
    epilog=examples("podsync list sync", "podsync list sync --config app/devspace.yaml"),
    no_args_is_help=True,
    **COMMON,
)
status_app = typer.Typer(
    help="Show what running syncs are doing.",
    epilog=examples("podsync status sync", "podsync status sync --json"),
    no_args_is_help=True,
    **COMMON,
)


@add_app.command(
    "sync",
    short_help="Add a dev.sync entry to devspace.yaml.",
    epilog=examples(
        "podsync add sync --local=src --container=/app/src",
        "podsync add sync --local=. --container=/srv -e logs/",
    ),
)
def add_sync_command(
    local: Annotated[
        str, typer.Option("--local", metavar="PATH", help="Local folder (from devspace.yaml).")
    ],
    container: Annotated[
        str, typer.Option("--container", metavar="PATH", help="Absolute container path.")
    ],
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-e", metavar="PATTERN", help="Exclude (repeatable, or a,b,c)."),
    ] = None,
    label_selector: Annotated[
        str | None,
        typer.Option(
            "--label-selector", metavar="K=V[,K=V]", help="Pods by labels (default: only image)."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a sync path mapping to dev.sync in devspace.yaml (comments and layout are kept)."""
    from podsync.cli import flags as cliflags

    path = config or DEFAULT_CONFIG
    selector = cliflags.parse_label_selector(label_selector) if label_selector else None
    patterns = list(cliflags.split_patterns(exclude, "--exclude"))
    cfgmod.add_sync(path, local, container, patterns, selector)
    typer.echo(f"Added a sync from {local} to {container} under dev.sync in {path}.")


@list_app.command(
    "sync",
    short_help="Show the dev.sync entries of devspace.yaml.",
    epilog=examples("podsync list sync", "podsync list sync --config path/to/devspace.yaml"),
)
def list_sync_command(config: ConfigOpt = None) -> None:
    """Show the dev.sync entries of devspace.yaml."""
    from rich.console import Console

    from podsync.cli import views

    views.list_sync(cfgmod.load_config(config or DEFAULT_CONFIG), Console())


@status_app.command(
    "sync",
    short_help="Show the state of the syncs running in this project.",
    epilog=examples(
        "podsync status sync", "podsync status sync --json", "podsync status sync --config app/"
    ),
)
def status_sync_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Show the state of the syncs running in this project (the Conflicts column counts the
    unresolved ones: see `podsync conflicts`)."""
    conflicts_cli.show_status(config, as_json)

"""The ``podsync`` command line: the only code that prints or exits.

Owns: commands and flags (``sync``, ``dev``, ``add sync``, ``list sync``, ``status sync``,
``--version``, completion), turning every error into one line on stderr with its exit code.
May import: everything.
"""

from __future__ import annotations

import importlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from podsync import __version__
from podsync import config as cfgmod
from podsync.cli import flags as cliflags
from podsync.cli import views
from podsync.engine.spec import RunOptions, SyncSpec
from podsync.engine.status import read_status, status_path
from podsync.errors import EXIT_USAGE, ConfigError, PodsyncError
from podsync.limits import STATE_DIR

if TYPE_CHECKING:
    from podsync.config.models import ProjectConfig

EXIT_INTERRUPTED = 130

#: Recent typer vendors click as ``typer._click``; older ones use click itself. Errors must be
#: caught from whichever parses our flags.
try:
    _cx: Any = importlib.import_module("typer._click.exceptions")
except ImportError:  # pragma: no cover - typer without a vendored click
    _cx = importlib.import_module("click.exceptions")
DEFAULT_CONFIG = Path("devspace.yaml")

app = typer.Typer(
    name="podsync",
    help="Two-way sync between a local folder and a folder inside a running container.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
add_app = typer.Typer(help="Add configuration to devspace.yaml.", no_args_is_help=True)
list_app = typer.Typer(help="List configuration from devspace.yaml.", no_args_is_help=True)
status_app = typer.Typer(help="Show what running syncs are doing.", no_args_is_help=True)
app.add_typer(add_app, name="add")
app.add_typer(list_app, name="list")
app.add_typer(status_app, name="status")


class Agent(StrEnum):
    auto = "auto"
    python = "python"
    shell = "shell"


ResetStateOpt = typer.Option(
    "--reset-state",
    help="Forget what earlier runs agreed on: the spec's initial sync runs again.",
)


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", metavar="FILE", help="devspace.yaml to use (default: ./)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"podsync {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """podsync keeps a local folder and a container folder identical (devspace.yaml dev.sync)."""


def _run(specs: list[SyncSpec], options: RunOptions, dev: bool = False) -> None:
    # imported here: the engine is heavy and not needed by list/status/add or usage errors
    from podsync.engine import devmode, runner

    hook = None
    if dev and options.terminal:
        hook = devmode.terminal_hook
    elif dev:
        hook = devmode.logs_hook
    code = runner.run(specs, options, after_initial=hook)
    if code:
        raise typer.Exit(code)


@app.command("sync")
def sync_command(
    local_path: Annotated[
        str, typer.Option("--local-path", metavar="DIR", help="Local folder to sync.")
    ] = ".",
    container_path: Annotated[
        str | None,
        typer.Option(
            "--container-path", metavar="PATH", help="Absolute container path (default: WORKDIR)."
        ),
    ] = None,
    pod: Annotated[
        str | None, typer.Option("--pod", metavar="NAME", help="Kubernetes pod.")
    ] = None,
    label_selector: Annotated[
        str | None,
        typer.Option("--label-selector", "-l", metavar="K=V[,K=V]", help="Pods by labels."),
    ] = None,
    image_name: Annotated[
        str | None,
        typer.Option("--image-name", metavar="NAME", help="Image name from devspace.yaml images."),
    ] = None,
    docker: Annotated[
        str | None, typer.Option("--docker", metavar="CONTAINER", help="Docker container.")
    ] = None,
    ssh: Annotated[
        str | None, typer.Option("--ssh", metavar="[USER@]HOST", help="Host reached with ssh.")
    ] = None,
    local_target: Annotated[
        str | None,
        typer.Option("--local-target", metavar="DIR", help="A folder on this machine as far side."),
    ] = None,
    container: Annotated[
        str | None,
        typer.Option("--container", "-c", metavar="NAME", help="Container inside the pod."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", metavar="NS", help="Kubernetes namespace.")
    ] = None,
    kube_context: Annotated[
        str | None, typer.Option("--kube-context", metavar="NAME", help="kubeconfig context.")
    ] = None,
    pick: Annotated[
        bool, typer.Option("--pick", help="Choose the pod/container interactively.")
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-e", metavar="PATTERN", help="Exclude (gitignore syntax)."),
    ] = None,
    upload_exclude: Annotated[
        list[str] | None,
        typer.Option("--upload-exclude", metavar="PATTERN", help="Never upload these."),
    ] = None,
    download_exclude: Annotated[
        list[str] | None,
        typer.Option("--download-exclude", metavar="PATTERN", help="Never download these."),
    ] = None,
    download_on_initial_sync: Annotated[
        bool,
        typer.Option(
            "--download-on-initial-sync/--no-download-on-initial-sync",
            help="Download files that exist only in the container.",
        ),
    ] = True,
    upload_only: Annotated[
        bool, typer.Option("--upload-only", help="Only upload local changes.")
    ] = False,
    download_only: Annotated[
        bool, typer.Option("--download-only", help="Only download container changes.")
    ] = False,
    no_watch: Annotated[bool, typer.Option("--no-watch", help="Initial sync, then exit.")] = False,
    bandwidth_upload: Annotated[
        int | None, typer.Option("--bandwidth-upload", metavar="KB", help="Upload limit, KB/s.")
    ] = None,
    bandwidth_download: Annotated[
        int | None,
        typer.Option("--bandwidth-download", metavar="KB", help="Download limit, KB/s."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the initial-sync plan and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every file.")] = False,
    reset_state: Annotated[bool, ResetStateOpt] = False,
    agent: Annotated[
        Agent, typer.Option("--agent", help="Agent in the container (auto: python, else shell).")
    ] = Agent.auto,
    config: ConfigOpt = None,
) -> None:
    """Sync a folder with a container now, without a dev.sync entry (as `devspace sync`)."""
    flags = cliflags.SyncFlags(
        local_path=local_path,
        container_path=container_path,
        pod=pod,
        label_selector=label_selector,
        image_name=image_name,
        docker=docker,
        ssh=ssh,
        local_target=local_target,
        container=container,
        namespace=namespace,
        kube_context=kube_context,
        pick=pick,
        exclude=tuple(exclude or ()),
        upload_exclude=tuple(upload_exclude or ()),
        download_exclude=tuple(download_exclude or ()),
        download_on_initial_sync=download_on_initial_sync,
        upload_only=upload_only,
        download_only=download_only,
        bandwidth_upload=bandwidth_upload,
        bandwidth_download=bandwidth_download,
        agent=agent.value,
    )
    cfg = _optional_config(config, needed=image_name is not None)
    state_dir = (cfg.root if cfg is not None and config is not None else Path.cwd()) / STATE_DIR
    spec = cliflags.build_sync_spec(flags, cfg, state_dir)
    options = RunOptions(
        watch=not no_watch, dry_run=dry_run, verbose=verbose, reset_state=reset_state
    )
    _run([spec], options)


def _optional_config(config: Path | None, needed: bool) -> ProjectConfig | None:
    """The --config file (must load), or ./devspace.yaml when a flag needs it and it exists."""
    if config is not None:
        return cfgmod.load_config(config)
    if needed and DEFAULT_CONFIG.is_file():
        return cfgmod.load_config(DEFAULT_CONFIG)
    return None


@app.command("dev")
def dev_command(
    config: ConfigOpt = None,
    terminal: Annotated[
        bool, typer.Option("--terminal", help="Open a terminal in the container.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Log every batch.")] = False,
    reset_state: Annotated[bool, ResetStateOpt] = False,
) -> None:
    """Run every dev.sync entry of devspace.yaml until Ctrl-C, streaming container logs."""
    cfg = cfgmod.load_config(config or DEFAULT_CONFIG)
    if not cfg.sync:
        raise ConfigError(
            f"{cfg.display}: dev.sync is empty; add an entry with "
            "`podsync add sync --local=PATH --container=PATH`"
        )
    _run(
        cfgmod.to_sync_specs(cfg, cfg.root / STATE_DIR),
        RunOptions(terminal=terminal, verbose=verbose, reset_state=reset_state),
        dev=True,
    )


@add_app.command("sync")
def add_sync_command(
    local: Annotated[
        str, typer.Option("--local", metavar="PATH", help="Local folder (from devspace.yaml).")
    ],
    container: Annotated[
        str, typer.Option("--container", metavar="PATH", help="Absolute container path.")
    ],
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="PATTERN", help="Exclude (repeatable, or a,b,c)."),
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
    path = config or DEFAULT_CONFIG
    selector = cliflags.parse_label_selector(label_selector) if label_selector else None
    patterns = list(cliflags.split_patterns(exclude, "--exclude"))
    cfgmod.add_sync(path, local, container, patterns, selector)
    typer.echo(f"Added a sync from {local} to {container} under dev.sync in {path}.")


@list_app.command("sync")
def list_sync_command(config: ConfigOpt = None) -> None:
    """Show the dev.sync entries of devspace.yaml."""
    views.list_sync(cfgmod.load_config(config or DEFAULT_CONFIG), Console())


@status_app.command("sync")
def status_sync_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Show the state of the syncs running in this project."""
    folder = (config.absolute().parent if config is not None else Path.cwd()).resolve()
    status = read_status(status_path(folder / STATE_DIR))
    if as_json:
        typer.echo(views.status_json(status))
    else:
        views.show_status(status, folder, Console())


def _usage_line(exc: Any) -> str:
    message = " ".join(exc.format_message().split())
    command = exc.ctx.command_path if exc.ctx is not None else "podsync"
    return f"{command}: {message} (see `{command} --help`)"


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default sys.argv[1:]) and return the exit code; never raises
    for user errors. Tests call this directly."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="podsync", standalone_mode=False)
    except _cx.NoArgsIsHelpError as exc:
        # building this error rendered the help (rich prints it and leaves the message empty)
        if exc.format_message():
            typer.echo(exc.format_message())
        return 0
    except _cx.UsageError as exc:
        typer.echo(_usage_line(exc), err=True)
        return EXIT_USAGE
    except PodsyncError as err:
        line = " ".join(str(err).split())
        # config errors start with FILE:LINE:COL so editors and terminals can jump to them
        typer.echo(line if isinstance(err, ConfigError) else f"podsync: {line}", err=True)
        return int(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except _cx.ClickException as exc:
        typer.echo(f"podsync: {' '.join(exc.format_message().split())}", err=True)
        return int(exc.exit_code)
    return result if isinstance(result, int) else 0


def main() -> NoReturn:
    """Console-script entry point (``podsync``) and ``python -m podsync``."""
    sys.exit(run_cli())

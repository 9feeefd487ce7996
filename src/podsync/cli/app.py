"""The ``podsync`` command line: the only code that prints or exits.

Owns: the ``podsync`` app and its commands ``sync`` and ``dev`` with their flags, the command
groups mounted on it (``add``, ``list``, ``status`` from ``cli.project``; ``conflicts``),
``--version``, completion, the help (plain, so no flag name is ever cut at any width;
examples in each command's epilog), and turning every error into one line on stderr with its
exit code. May import: everything, but lazily: a module is imported by the command that
needs it, so ``podsync --help`` or ``podsync sync --docker`` never load the Kubernetes
client, the YAML/pydantic config stack or the interactive picker
(tests/unit/cli/test_imports.py holds that true).
"""

from __future__ import annotations

import importlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from podsync import __version__
from podsync import config as cfgmod
from podsync.cli import conflicts as conflicts_cli
from podsync.cli.common import COMMON, DEFAULT_CONFIG, ConfigOpt, examples
from podsync.cli.project import add_app, list_app, status_app
from podsync.errors import EXIT_USAGE, ConfigError, PodsyncError
from podsync.limits import STATE_DIR

if TYPE_CHECKING:
    from podsync.config.models import ProjectConfig
    from podsync.engine.spec import RunOptions, SyncSpec

EXIT_INTERRUPTED = 130

#: Recent typer vendors click as ``typer._click``; older ones use click itself. Errors must be
#: caught from whichever parses our flags.
try:
    _cx: Any = importlib.import_module("typer._click.exceptions")
except ImportError:  # pragma: no cover - typer without a vendored click
    _cx = importlib.import_module("click.exceptions")

app = typer.Typer(
    name="podsync",
    no_args_is_help=True,
    help="Two-way sync between a local folder and a folder inside a running container.",
    epilog=examples(
        "podsync sync --docker my-app --container-path /app",
        "podsync dev",
        "podsync status sync",
        "podsync conflicts",
    ),
    **COMMON,
)
app.add_typer(add_app, name="add")
app.add_typer(list_app, name="list")
app.add_typer(status_app, name="status")
app.add_typer(conflicts_cli.app, name="conflicts")


class Agent(StrEnum):
    auto = "auto"
    python = "python"
    shell = "shell"


ResetStateOpt = typer.Option(
    "--reset-state",
    help="Forget what earlier runs agreed on: the spec's initial sync runs again.",
)
AllReplicasOpt = typer.Option(
    "--all-replicas",
    help="Upload to every pod the selection matches; download from the newest Ready one only.",
)


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
    # The agents of Docker targets start first, while the engine loads (engine.prestart).
    from podsync.engine import prestart

    loop = None
    try:
        loop = prestart.start(specs)
        # imported here: the engine is heavy and not needed by list/status/add or usage errors
        from podsync.engine import runner

        hook = None
        if dev:  # log streaming and the terminal (rich, the Kubernetes API) only for `podsync dev`
            from podsync.engine import devmode

            hook = devmode.terminal_hook if options.terminal else devmode.logs_hook
        code = runner.run(specs, options, after_initial=hook, loop=loop)
    finally:
        if loop is not None and not loop.is_closed():  # (the engine did not start)
            from podsync.transport.process import discard_ahead

            discard_ahead()
            loop.close()
    if code:
        raise typer.Exit(code)


@app.command(
    "sync",
    short_help="Sync a folder with a container now (no devspace.yaml needed).",
    epilog=examples(
        "podsync sync --docker my-app --container-path /app",
        "podsync sync -l app=web -e node_modules/ -e logs/",
        "podsync sync --docker web --upload-exclude node_modules/",
        "podsync sync --docker my-app --dry-run",
    ),
)
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
            help="Download files that exist only in the container (default: on; off: delete"
            " them there).",
            show_default=False,
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
        bool, typer.Option("--dry-run", help="Print the initial-sync plan (on stdout) and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every file.")] = False,
    reset_state: Annotated[bool, ResetStateOpt] = False,
    all_replicas: Annotated[bool, AllReplicasOpt] = False,
    agent: Annotated[
        Agent,
        typer.Option(
            "--agent",
            metavar="auto|python|shell",
            help="Agent in the container (default auto: python if it has python3 >= 3.9, else"
            " shell).",
            show_default=False,
        ),
    ] = Agent.auto,
    config: ConfigOpt = None,
) -> None:
    """Sync a folder with a container now, without a dev.sync entry (as `devspace sync`).

    \b
    Exactly one target: --pod, --label-selector or
    --image-name (Kubernetes), --docker, --ssh or
    --local-target. The initial sync follows DevSpace's
    rules, then both sides are watched until Ctrl-C
    (with --no-watch: exit after the initial sync).
    """
    from podsync.cli import flags as cliflags
    from podsync.engine.spec import RunOptions

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
        all_replicas=all_replicas,
    )
    cfg = _optional_config(config, needed=image_name is not None)
    state_dir = (cfg.root if cfg is not None and config is not None else Path.cwd()) / STATE_DIR
    spec = cliflags.build_sync_spec(flags, cfg, state_dir)
    options = RunOptions(
        watch=not no_watch,
        dry_run=dry_run,
        verbose=verbose,
        reset_state=reset_state,
        all_replicas=all_replicas,
    )
    _run([spec], options)


def _optional_config(config: Path | None, needed: bool) -> ProjectConfig | None:
    """The --config file (must load), or ./devspace.yaml when a flag needs it and it exists."""
    if config is not None:
        return cfgmod.load_config(config)
    if needed and DEFAULT_CONFIG.is_file():
        return cfgmod.load_config(DEFAULT_CONFIG)
    return None


@app.command(
    "dev",
    short_help="Run every dev.sync entry of devspace.yaml until Ctrl-C.",
    epilog=examples(
        "podsync dev",
        "podsync dev --config path/to/devspace.yaml",
        "podsync dev --terminal",
        "podsync dev --all-replicas",
    ),
)
def dev_command(
    config: ConfigOpt = None,
    terminal: Annotated[
        bool, typer.Option("--terminal", help="Open a terminal in the container.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Log every batch.")] = False,
    reset_state: Annotated[bool, ResetStateOpt] = False,
    all_replicas: Annotated[bool, AllReplicasOpt] = False,
) -> None:
    """Run every dev.sync entry of devspace.yaml until Ctrl-C, streaming container logs."""
    from podsync.cli.specs import to_sync_specs
    from podsync.engine.spec import RunOptions

    cfg = cfgmod.load_config(config or DEFAULT_CONFIG)
    if not cfg.sync:
        raise ConfigError(
            f"{cfg.display}: dev.sync is empty; add an entry with "
            "`podsync add sync --local=PATH --container=PATH`"
        )
    _run(
        to_sync_specs(cfg, cfg.root / STATE_DIR),
        RunOptions(
            terminal=terminal,
            verbose=verbose,
            reset_state=reset_state,
            all_replicas=all_replicas,
        ),
        dev=True,
    )


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

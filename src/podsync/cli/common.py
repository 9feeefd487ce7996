"""What every podsync command shares: how ``--help`` looks, ``--config``, the project folder.

Owns: :data:`COMMON` (plain click help: flag names are never cut at any terminal width, and
switches show no ``<bool>`` metavar, unlike typer's rich panels), :func:`examples`,
:data:`ConfigOpt`, :data:`DEFAULT_CONFIG` and :func:`state_dir`. May import: typer, the
standard library, ``podsync.limits`` (imported by every podsync command line: keep it light).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from podsync.limits import STATE_DIR

#: The project file the commands read when no --config is given.
DEFAULT_CONFIG = Path("devspace.yaml")

#: Keyword arguments for every ``typer.Typer`` of the CLI.
COMMON: dict[str, Any] = {
    # None: click's own formatter (a definition list that moves a long flag's help to the
    # next line) instead of rich panels (a table that truncates flag names to fit).
    "rich_markup_mode": None,
    "pretty_exceptions_enable": False,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}


def examples(*lines: str) -> str:
    """An epilog listing ``lines`` verbatim under "Examples:" (``\\b`` stops click from
    re-wrapping the paragraph, so each example stays one copyable line)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", metavar="FILE", help="devspace.yaml to use (default: ./)."),
]


#: What marks a project folder when no ``--config`` names one.
MARKERS = ("devspace.yaml", STATE_DIR)


def project_folder(config: Path | None) -> Path:
    """The project folder: the one holding ``--config``, else (as git finds its work tree)
    the nearest of the current folder and its parents that holds devspace.yaml or
    ``.devspace``, else the current folder."""
    if config is not None:
        return config.absolute().parent.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in MARKERS):
            return folder
    return here


def state_dir(config: Path | None) -> Path:
    """The project's ``.devspace`` folder (status, logs, conflicts, trash)."""
    return project_folder(config) / STATE_DIR

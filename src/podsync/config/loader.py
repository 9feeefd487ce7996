"""Loading devspace.yaml into a validated :class:`ProjectConfig`.

Owns: ``load_config`` (file -> config) and ``load_text`` (text -> config, used by the editor to
verify its own output). Every problem raises :class:`ConfigError` with exactly one line
``FILE:LINE:COL: OPTION: problem; fix``. May import: pydantic, podsync.config.*, podsync.errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from podsync.config.checks import check_entry
from podsync.config.messages import explain
from podsync.config.models import DevspaceFile, ProjectConfig
from podsync.config.yamltree import (
    Loc,
    describe,
    display_name,
    option_path,
    parse_text,
    position,
    printable,
    read_text,
    to_plain,
)
from podsync.errors import ConfigError

#: Sections that may be written but left empty (``dev:`` with nothing under it).
_NULLABLE_SECTIONS = ("images", "deployments", "dev")


def load_config(path: Path) -> ProjectConfig:
    """Read and validate ``path``. Raises ConfigError (exit 2) with one line on any problem."""
    display = display_name(path)
    return load_text(read_text(path, display), path, display)


def load_text(text: str, path: Path, display: str | None = None) -> ProjectConfig:
    """Validate ``text`` as if it were the content of ``path``."""
    display = display if display is not None else display_name(path)
    tree = parse_text(text, display)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{display}:1:1: expected a mapping at the top level (images:, deployments:, "
            f"dev:), got {describe(to_plain(tree))}"
        )
    data = _without_empty_sections(to_plain(tree))
    try:
        parsed = DevspaceFile.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, tree, display) from None
    abs_path = Path(path).absolute()
    for index, entry in enumerate(parsed.dev.sync):
        problem = check_entry(index, entry, parsed.images, parsed.deployments, abs_path.parent)
        if problem is not None:
            loc, want, message = problem
            raise _error(display, tree, loc, want, message)
    return ProjectConfig(
        path=abs_path,
        display=display,
        images=dict(parsed.images),
        deployments=tuple(parsed.deployments),
        sync=tuple(parsed.dev.sync),
        sync_positions=tuple(
            position(tree, ("dev", "sync", i)) for i in range(len(parsed.dev.sync))
        ),
    )


def _without_empty_sections(data: dict[Any, Any]) -> dict[Any, Any]:
    out = {k: v for k, v in data.items() if not (k in _NULLABLE_SECTIONS and v is None)}
    dev = out.get("dev")
    if isinstance(dev, dict) and "sync" in dev and dev["sync"] is None:
        out["dev"] = {k: v for k, v in dev.items() if k != "sync"}
    return out


def _error(display: str, tree: Any, loc: Loc, want: str, message: str) -> ConfigError:
    line, col = position(tree, loc, "key" if want == "key" else "value")
    return ConfigError(printable(f"{display}:{line}:{col}: {option_path(loc)}: {message}"))


def _first_error(exc: ValidationError, tree: Any, display: str) -> ConfigError:
    """The error that comes first in the file, so fixing top-down converges."""
    found: list[tuple[tuple[int, int], ConfigError]] = []
    for err in exc.errors():
        raw = tuple(err["loc"])
        want, message = explain(dict(err))
        if raw and raw[-1] == "[key]":  # a bad mapping key: show it as a key, not an index
            loc: tuple[str | int, ...] = raw[:-1]
            shown = f"{option_path(loc[:-1])}.{loc[-1]}"
        else:
            loc, shown = raw, option_path(raw)
        # a missing option is fixed where its parent is written
        at = loc[:-1] if err["type"] == "missing" else loc
        line, col = position(tree, at, "key" if want == "key" else "value")
        text = printable(f"{display}:{line}:{col}: {shown}: {message}")
        found.append(((line, col), ConfigError(text)))
    found.sort(key=lambda item: item[0])
    return found[0][1]

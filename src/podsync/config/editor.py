"""``podsync add sync``: append one dev.sync entry to devspace.yaml, touching nothing else.

Owns: ``add_sync`` and the atomic file write. May import: ruamel.yaml, podsync.config.*,
podsync.errors, the standard library.

Why splice text instead of dumping the round-trip tree: ruamel re-indents the whole document to
one style on dump, which would rewrite lines the user never asked us to touch. We use the
round-trip tree only to find *where* things are (line/col of keys and items, the indentation
style in use), render the new entry in that style, insert it as text, then re-load the result
and check that it means exactly "the old config plus this entry" before writing.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from podsync.config.checks import Problem, check_container_path, check_local, check_pattern
from podsync.config.loader import load_text
from podsync.config.models import ProjectConfig, SyncConfig
from podsync.config.yamltree import display_name, parse_text, position, read_text
from podsync.errors import ConfigError, UsageError


def add_sync(
    path: Path,
    local: str,
    container: str,
    excludes: list[str],
    label_selector: dict[str, str] | None,
) -> None:
    """Append ``{labelSelector|imageName, localSubPath, containerPath, excludePaths}`` to
    ``dev.sync`` of ``path``. Without ``label_selector`` the project's only image is used.
    Raises UsageError for bad arguments and ConfigError for a bad file or a duplicate entry."""
    display = display_name(path)
    text = read_text(path, display)
    cfg = load_text(text, path, display)
    entry = _new_entry(cfg, local, container, excludes, label_selector)
    _refuse_duplicate(cfg, entry)
    tree = parse_text(text, display)
    new_text = _splice(text, tree, _render_entry(entry, tree))
    _verify(cfg, new_text, path, display, entry)
    atomic_write(path, new_text)


def _new_entry(
    cfg: ProjectConfig,
    local: str,
    container: str,
    excludes: list[str],
    label_selector: dict[str, str] | None,
) -> dict[str, Any]:
    problem: Problem | None = check_local(("--local",), local, cfg.root) or check_container_path(
        ("--container",), container
    )
    for pattern in excludes:
        problem = problem or check_pattern(("--exclude",), pattern)
    if problem is not None:
        raise UsageError(f"{problem[0][0]}: {problem[2]}")
    entry: dict[str, Any] = {}
    if label_selector:
        entry["labelSelector"] = dict(label_selector)
    elif len(cfg.images) == 1:
        entry["imageName"] = next(iter(cfg.images))
    else:
        what = f"it defines {len(cfg.images)} images" if cfg.images else "it defines no images"
        raise UsageError(
            f"--label-selector: required because {cfg.display} cannot pick the container by "
            f"image ({what}); pass --label-selector app=NAME"
        )
    entry["localSubPath"] = _relative(local, cfg)
    entry["containerPath"] = container
    if excludes:
        entry["excludePaths"] = list(excludes)
    return entry


def _relative(local: str, cfg: ProjectConfig) -> str:
    """localSubPath is relative to devspace.yaml: an absolute --local (already checked to be
    inside the project) is stored relative, so the project can move."""
    if not os.path.isabs(local):
        return local
    rel = os.path.relpath(os.path.realpath(local), os.path.realpath(cfg.root))
    return "./" if rel == "." else rel


def _same_target(cfg: ProjectConfig, old: SyncConfig, new: SyncConfig) -> bool:
    return (
        old.label_selector == new.label_selector
        and old.image_name == new.image_name
        and cfg.local_path(old) == cfg.local_path(new)
        and _norm_container(old.container_path) == _norm_container(new.container_path)
    )


def _norm_container(path: str | None) -> str | None:
    return None if path is None else os.path.normpath(path)


def _refuse_duplicate(cfg: ProjectConfig, entry: dict[str, Any]) -> None:
    wanted = SyncConfig.model_validate(entry)
    for index, old in enumerate(cfg.sync):
        if _same_target(cfg, old, wanted):
            line, col = cfg.sync_positions[index]
            raise ConfigError(
                f"{cfg.display}:{line}:{col}: dev.sync[{index}]: already syncs "
                f"{old.local_sub_path} with {old.container_path} for this container; "
                "edit that entry instead of adding another"
            )


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar (plain when safe, quoted otherwise)."""
    out = io.StringIO()
    yaml = YAML(typ="rt")
    yaml.width = 1 << 16
    yaml.dump({"k": value}, out)
    return out.getvalue().rstrip("\n")[3:]


def _is_flow(node: Any) -> bool:
    """Whether a round-trip mapping/list is written ``{...}``/``[...]``."""
    fa = getattr(node, "fa", None)
    return bool(fa is not None and fa.flow_style())


def _style(tree: Any) -> tuple[int, int]:
    """(mapping indent, dash offset) used in the file; DevSpace's own (2, 0) by default."""
    indent, offset = 0, -1
    stack: list[Any] = [tree] if isinstance(tree, dict) else []
    while stack and (indent == 0 or offset < 0):
        node = stack.pop()
        for key, value in node.items():
            key_col = position(node, (key,), "key")[1]
            if isinstance(value, dict) and value and not _is_flow(value):
                child_col = position(value, (next(iter(value)),), "key")[1]
                if child_col > key_col and indent == 0:
                    indent = child_col - key_col
                stack.append(value)
            elif isinstance(value, list) and value and not _is_flow(value):
                if offset < 0:
                    offset = max(0, position(value, (0,))[1] - 2 - key_col)
                stack.extend(v for v in value if isinstance(v, dict))
    return (indent or 2, max(offset, 0))


def _render_entry(entry: dict[str, Any], tree: Any) -> list[str]:
    """The entry as lines of a block list item, dash at column 0 (caller indents)."""
    indent, offset = _style(tree)
    lines: list[str] = []
    for key, value in entry.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"{' ' * indent}{_scalar(k)}: {_scalar(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"{' ' * offset}- {_scalar(v)}" for v in value]
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return ["- " + lines[0]] + ["  " + line for line in lines[1:]]


def _cannot(option: str) -> ConfigError:
    return ConfigError(
        f"{option} is written in a form podsync cannot extend without reformatting the file "
        "(flow style or a value on the same line); write it as a block mapping/list and retry"
    )


def _content_end(lines: list[str], start: int, stop: int) -> int:
    """Index just after the last line in [start, stop) that is neither blank nor a comment
    (trailing comments before the next key belong to what follows, not to this block)."""
    end = start + 1
    for i in range(start, min(stop, len(lines))):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            end = i + 1
    return end


def _next_key_line(node: Any, key: str, default: int) -> int:
    """0-based line of the key that follows ``key`` in mapping ``node``, else ``default``."""
    keys = list(node)
    after = keys[keys.index(key) + 1 :]
    return position(node, (after[0],), "key")[0] - 1 if after else default


def _insert(lines: list[str], index: int, block: list[str], nl: str) -> str:
    if index > 0 and not lines[index - 1].endswith(("\n", "\r")):
        lines[index - 1] += nl
    return "".join(lines[:index] + [b + nl for b in block] + lines[index:])


def _splice(text: str, tree: Any, item: list[str]) -> str:
    """``text`` with ``item`` (a rendered list item) appended to dev.sync."""
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    indent, offset = _style(tree)
    if not isinstance(tree, dict) or "dev" not in tree:
        block = ["dev:", " " * indent + "sync:"] + [" " * (indent + offset) + x for x in item]
        return _insert(lines, len(lines), block, nl)
    dev, dev_line = tree["dev"], position(tree, ("dev",), "key")[0] - 1
    if dev is None:
        if not re.match(r"^dev:\s*(#.*)?$", lines[dev_line].rstrip("\r\n")):
            raise _cannot("dev")
        block = [" " * indent + "sync:"] + [" " * (indent + offset) + x for x in item]
        return _insert(lines, dev_line + 1, block, nl)
    if not isinstance(dev, dict) or _is_flow(dev) or not dev:
        raise _cannot("dev")
    key_col = position(dev, (next(iter(dev)),), "key")[1] - 1
    dev_stop = _next_key_line(tree, "dev", len(lines))
    if "sync" not in dev:
        block = [" " * key_col + "sync:"] + [" " * (key_col + offset) + x for x in item]
        return _insert(lines, _content_end(lines, dev_line, dev_stop), block, nl)
    sync, sync_line = dev["sync"], position(dev, ("sync",), "key")[0] - 1
    if sync is None or (isinstance(sync, list) and not sync):
        found = re.match(r"^(\s*sync:)\s*(\[\s*\])?\s*(#.*)?$", lines[sync_line].rstrip("\r\n"))
        if not found:
            raise _cannot("dev.sync")
        comment = f" {found.group(3)}" if found.group(3) else ""
        lines[sync_line] = found.group(1) + comment + nl
        return _insert(lines, sync_line + 1, [" " * (key_col + offset) + x for x in item], nl)
    if not isinstance(sync, list) or _is_flow(sync):
        raise _cannot("dev.sync")
    dash_col = position(sync, (len(sync) - 1,))[1] - 3
    stop = _next_key_line(dev, "sync", dev_stop)
    end = _content_end(lines, sync_line, stop)
    return _insert(lines, end, [" " * dash_col + x for x in item], nl)


def _verify(
    old: ProjectConfig, new_text: str, path: Path, display: str, entry: dict[str, Any]
) -> None:
    """The edited text must load and mean "old config + entry"; otherwise write nothing."""
    new = load_text(new_text, path, display)
    expected = SyncConfig.model_validate(entry)
    if new.sync[:-1] != old.sync or not new.sync or new.sync[-1] != expected:
        raise ConfigError(
            f"{display}: podsync could not add the entry without changing other settings; "
            "add it under dev.sync by hand"
        )


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: temp file in the same folder, fsync, rename; the file
    keeps its permission bits. A crash leaves either the old or the new file, never half."""
    target = Path(path)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

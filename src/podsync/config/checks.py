"""Rules across options of one dev.sync entry that types alone cannot express.

Owns: the semantic checks of the spec (selector choice, imageName resolution and ambiguity,
path rules, exclude pattern syntax) and of onUpload.exec (a command, usable onChange patterns).
Each check returns None or (loc, want, message) so the loader can add the file position.
May import: podsync.config.models, podsync.core.excludes, the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from podsync.core.excludes import validate_pattern

if TYPE_CHECKING:  # the models cost ~0.2 s to build; the CLI imports checks for flag checks
    from podsync.config.models import Deployment, ExecConfig, ImageConfig, SyncConfig

__all__ = [
    "Problem",
    "check_container_path",
    "check_entry",
    "check_local",
    "check_pattern",
    "image_repository",
    "validate_pattern",
]

Want = Literal["key", "value"]
Problem = tuple[tuple[str | int, ...], Want, str]

EXCLUDE_OPTIONS = (
    ("excludePaths", "exclude_paths"),
    ("downloadExcludePaths", "download_exclude_paths"),
    ("uploadExcludePaths", "upload_exclude_paths"),
)


def image_repository(ref: str) -> str:
    """``registry:5000/john/app:1.2@sha256:..`` -> ``registry:5000/john/app`` (tag and digest
    do not change which deployment an image belongs to)."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def check_entry(
    index: int,
    entry: SyncConfig,
    images: dict[str, ImageConfig],
    deployments: Sequence[Deployment],
    root: Path,
) -> Problem | None:
    """The first problem of ``dev.sync[index]`` or None."""
    base: tuple[str | int, ...] = ("dev", "sync", index)
    return (
        _check_selector(base, entry)
        or _check_image(base, entry, images, deployments)
        or check_local((*base, "localSubPath"), entry.local_sub_path, root)
        or check_container_path((*base, "containerPath"), entry.container_path)
        or _check_excludes(base, entry)
        or _check_on_upload(base, entry)
    )


def _check_selector(base: tuple[str | int, ...], entry: SyncConfig) -> Problem | None:
    if entry.image_name is not None and entry.label_selector is not None:
        return (
            (*base, "labelSelector"),
            "key",
            "cannot be combined with imageName; keep one of them to select the container",
        )
    if entry.image_name is None and entry.label_selector is None:
        return (
            base,
            "value",
            "no container selected; add imageName: <name under images> "
            "or labelSelector: {label: value}",
        )
    if entry.label_selector is not None and not entry.label_selector:
        return ((*base, "labelSelector"), "value", "is empty; add at least one label: value")
    if entry.container_name is not None and entry.label_selector is None:
        return (
            (*base, "containerName"),
            "key",
            "only works together with labelSelector (imageName already selects the "
            "container); remove containerName or use labelSelector",
        )
    return None


def _check_image(
    base: tuple[str | int, ...],
    entry: SyncConfig,
    images: dict[str, ImageConfig],
    deployments: Sequence[Deployment],
) -> Problem | None:
    name = entry.image_name
    if name is None:
        return None
    loc = (*base, "imageName")
    if name not in images:
        if not images:
            return (loc, "value", f'image "{name}" is not defined: add it under images')
        # imported here: yamltree loads ruamel, which `podsync sync` flags never need
        from podsync.config.yamltree import did_you_mean

        guess = did_you_mean(name, images)
        hint = f'did you mean "{guess}"?' if guess else "defined images: " + ", ".join(images)
        return (loc, "value", f'image "{name}" is not defined under images; {hint}')
    repo = image_repository(images[name].image)
    users = [
        d.name
        for d in deployments
        if d.component is not None
        and any(image_repository(c.image) == repo for c in d.component.containers)
    ]
    if len(users) > 1:
        return (
            loc,
            "value",
            f'image "{images[name].image}" is used by {len(users)} deployments '
            f"({', '.join(users)}), so imageName cannot choose one container; "
            "use labelSelector with containerName instead",
        )
    return None


def check_local(loc: tuple[str | int, ...], sub: str, root: Path) -> Problem | None:
    """localSubPath must name an existing folder inside the project folder ``root``."""
    if "\x00" in sub:
        return (loc, "value", "contains a NUL character; remove it")
    if not _is_utf8(sub):
        return (loc, "value", "is not valid UTF-8 text (a lone surrogate escape); fix the path")
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(root, sub))
    if os.path.commonpath([real_root, target]) != real_root:
        return (
            loc,
            "value",
            f'"{sub}" points outside the project folder (the one holding devspace.yaml); '
            "use a path inside it",
        )
    if not os.path.exists(target):
        return (
            loc,
            "value",
            f'folder "{sub}" does not exist next to devspace.yaml; create it or fix the path',
        )
    if not os.path.isdir(target):
        return (loc, "value", f'"{sub}" is a file; localSubPath must be a folder')
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_container_path(loc: tuple[str | int, ...], path: str | None) -> Problem | None:
    if path is not None and "\x00" in path:
        return (loc, "value", "contains a NUL character; remove it")
    if path is not None and not _is_utf8(path):
        return (loc, "value", "is not valid UTF-8 text (a lone surrogate escape); fix the path")
    if path is None or path.startswith("/"):
        return None
    example = "/" + path.lstrip("./") if path.strip("./") else "/app"
    return (
        loc,
        "value",
        f'"{path}" is not an absolute path; write the full container path, e.g. {example}',
    )


def check_pattern(loc: tuple[str | int, ...], pattern: str) -> Problem | None:
    # a lone surrogate (only reachable through a "\ud800" escape) cannot be matched as bytes
    problem = validate_pattern(pattern) if _is_utf8(pattern) else "is not valid UTF-8 text"
    if problem is None:
        return None
    return (loc, "value", f'invalid exclude pattern "{pattern}": {problem}')


def _check_excludes(base: tuple[str | int, ...], entry: SyncConfig) -> Problem | None:
    for option, attr in EXCLUDE_OPTIONS:
        patterns: list[str] = getattr(entry, attr)
        for i, pattern in enumerate(patterns):
            found = check_pattern((*base, option, i), pattern)
            if found:
                return found
    return None


def _check_on_upload(base: tuple[str | int, ...], entry: SyncConfig) -> Problem | None:
    if entry.on_upload is None:
        return None
    for index, item in enumerate(entry.on_upload.exec):
        found = check_exec((*base, "onUpload", "exec", index), item)
        if found:
            return found
    return None


def check_exec(loc: tuple[str | int, ...], item: ExecConfig) -> Problem | None:
    """One ``onUpload.exec`` item: a command to run, and onChange patterns that can match."""
    command = item.command
    if command is None:
        return (
            loc,
            "value",
            'required option "command" is missing; add it, e.g. command: npm install',
        )
    where = (*loc, "command")
    if not command.strip():
        return (
            where,
            "value",
            "is empty; write the command to run in the container, e.g. command: npm install",
        )
    if "\x00" in command:
        return (where, "value", "contains a NUL character; remove it")
    if not _is_utf8(command):
        return (where, "value", "is not valid UTF-8 text (a lone surrogate escape); fix it")
    patterns = item.on_change_patterns()
    if patterns is None:
        return None
    if not patterns:
        return (
            (*loc, "onChange"),
            "value",
            "is empty, so the command would never run; list the paths that trigger it "
            '(e.g. ["./package.json"]), or remove onChange to run it after every upload',
        )
    for i, (written, pattern) in enumerate(zip(item.on_change or (), patterns, strict=True)):
        problem = _on_change_problem(pattern)
        if problem is not None:
            return (
                (*loc, "onChange", i),
                "value",
                f'invalid onChange pattern "{written}": {problem}',
            )
    return None


def _on_change_problem(pattern: str) -> str | None:
    """What makes ``pattern`` (``./`` already anchored) useless as an onChange pattern."""
    if not pattern.strip():
        return "it is blank; write a path such as ./package.json"
    if pattern.startswith("#"):
        return (
            f"gitignore reads a leading '#' as a comment; write '\\{pattern}' for a name "
            "that starts with '#'"
        )
    if pattern.lstrip("!") == "/":
        return (
            "it names the sync root itself; remove onChange to run the command after every upload"
        )
    return validate_pattern(pattern) if _is_utf8(pattern) else "is not valid UTF-8 text"

"""Removing what sync replaces or deletes in a folder, without losing anything it must keep.

Owns: :func:`discard` (a path sync replaces or deletes goes to the trash when there is one,
else is removed) and :func:`discard_dir` (a directory's content goes, except what is
excluded: scans never listed it, so the engine cannot have meant it). May import: the
standard library, ``podsync.core`` and the other ``replica`` modules. Ships inside the
container agent (Python 3.9, stdlib only).

The caller opened ``dir_fd`` with the dir-fd walk of ``fsops``; names are single components
below it, so nothing outside the sync root is ever touched.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Optional

from podsync.core.paths import RelPath
from podsync.replica import fsops
from podsync.replica.scan import Prune
from podsync.replica.trash import Trash


def discard(
    dir_fd: int, name: str, path: RelPath, prune: Prune, trash: Optional[Trash], temp_prefix: str
) -> None:
    """Remove ``name`` in ``dir_fd`` (sync's ``path``), into ``trash`` when there is one."""
    st = fsops.lstat_at(dir_fd, name)
    if st is not None and stat.S_ISDIR(st.st_mode):
        discard_dir(dir_fd, name, path, prune, trash, temp_prefix)
    elif trash is not None:
        trash.preserve(dir_fd, name, path, move=True)
    else:
        fsops.remove_at(dir_fd, name)


def discard_dir(
    dir_fd: int, name: str, path: RelPath, prune: Prune, trash: Optional[Trash], temp_prefix: str
) -> bool:
    """Remove a directory's content except what is excluded (scans never listed it, so
    the engine cannot have meant it); the directory goes too unless something was kept.
    Returns True when something was kept."""
    fd = fsops.open_dir_at(dir_fd, name)
    kept = False
    try:
        with os.scandir(fd) as it:
            children = list(it)
        for child in children:
            child_path = RelPath(f"{path}/{child.name}")
            is_dir = child.is_dir(follow_symlinks=False)
            if prune(child_path, is_dir):
                kept = True
            elif is_dir:
                kept = discard_dir(fd, child.name, child_path, prune, trash, temp_prefix) or kept
            elif trash is not None and not child.name.startswith(temp_prefix):
                trash.preserve(fd, child.name, child_path, move=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(child.name, dir_fd=fd)
    finally:
        os.close(fd)
    if not kept:
        if trash is not None:  # now empty: kept in the trash as it stood
            trash.preserve(dir_fd, name, path, move=True)
        else:
            os.rmdir(name, dir_fd=dir_fd)
    return kept

"""Scanning a sync root into a Snapshot.

Owns: the tree walk that decides what one side *is*: which names are listed, which are
skipped (pruned, our temp files, escaping symlinks, special files, names that cannot cross
the wire) and the Entry of each. May import: the standard library, ``podsync.core``,
``replica.fsops``. Ships inside the container agent.

Speed matters (a 10k-file tree is rescanned on every overflow/reconnect): directories and
symlinks are classified from ``d_type`` without a stat call, and only regular files are
lstat'ed (through the directory fd, so a swapped-in symlink is never followed).
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Tuple

from podsync.core.entry import DIR, FILE, LINK, Entry, Snapshot, new_entry
from podsync.core.paths import RelPath, symlink_stays_inside
from podsync.replica import fsops

Prune = Callable[[str, bool], bool]


def name_problem(name: str) -> Optional[str]:
    """Why a file name found on disk cannot be synced, or None when it can."""
    if "\\" in name:
        return "contains a backslash"
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid UTF-8"
    return None


def link_target_ok(link: RelPath, target: str) -> bool:
    """True when a symlink at ``link`` to ``target`` may be synced: it stays inside the root
    lexically (``core.paths.symlink_stays_inside``) and has no ``..`` after a name. The
    second rule matters because ``x/..`` is resolved through ``x``, which may itself be a
    symlink to a deeper directory, so ``x/../../y`` can leave the root on disk even though
    it stays inside on paper."""
    if not symlink_stays_inside(link, target) or name_problem(target):
        return False
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    return ".." not in parts[ups:]


class Scanner:
    """One scan run: fills ``out`` and reports skipped paths through ``warn``."""

    def __init__(
        self,
        prune: Prune,
        temp_prefix: str,
        skip: Optional[RelPath],
        warn: Callable[[RelPath, str], None],
    ) -> None:
        self.prune = prune
        self.temp_prefix = temp_prefix
        self.skip = skip
        self.warn = warn
        self.errors: List[Tuple[RelPath, OSError]] = []
        self.out: Snapshot = {}

    def tree(self, top_fd: int, top: RelPath) -> None:
        """Add every listable entry below the directory ``top_fd`` (at ``top``)."""
        out = self.out
        prune = self.prune
        prefix = self.temp_prefix
        for fd, rel, entries, descend in fsops.walk(top_fd, top, self.errors):
            base = rel + "/" if rel else ""
            for de in entries:
                name = de.name
                if name.startswith(prefix):
                    continue
                path = RelPath(base + name)
                if ("\\" in name or not name.isascii()) and name_problem(name):
                    self.warn(path, f"skipped: its name {name_problem(name)}")
                    continue
                try:
                    if de.is_dir(follow_symlinks=False):
                        if path == self.skip or prune(path, True):
                            continue
                        out[path] = fsops.DIR_ENTRY
                        descend.append(name)
                    elif de.is_file(follow_symlinks=False):
                        if prune(path, False):
                            continue
                        st = de.stat(follow_symlinks=False)
                        exe = bool(st.st_mode & 0o100)
                        out[path] = new_entry(FILE, st.st_size, st.st_mtime_ns, exe, None)
                    elif de.is_symlink() and not prune(path, False):
                        self.link(fd, name, path)
                    # fifos, sockets and devices are never synced
                except FileNotFoundError:
                    continue  # vanished since the listing; the next scan agrees

    def link(self, dir_fd: int, name: str, path: RelPath) -> None:
        target = os.readlink(name, dir_fd=dir_fd)
        if name_problem(target):
            self.warn(path, f"skipped: symlink target {name_problem(target)}")
        elif not link_target_ok(path, target):
            self.warn(path, f"skipped: symlink target '{target}' leaves the sync folder")
        else:
            self.out[path] = Entry(LINK, target=target)

    def one(self, root_fd: int, path: RelPath) -> None:
        """Add ``path`` itself (if present and listable) and, for a directory, its subtree."""
        parts = path.split("/")
        for i, part in enumerate(parts):
            sub = RelPath("/".join(parts[: i + 1]))
            if part.startswith(self.temp_prefix) or name_problem(part) or sub == self.skip:
                return
            if i < len(parts) - 1 and self.prune(sub, True):
                return
        try:
            fd, name = fsops.walk_parent(root_fd, path, create=False)
        except (FileNotFoundError, fsops.Refused):
            return
        try:
            entry = fsops.entry_at(fd, name)
            if entry is None:
                return
            if self.prune(path, entry.kind == DIR):
                return
            if entry.kind == LINK:
                self.link(fd, name, path)
            elif entry.kind == FILE:
                self.out[path] = entry
            else:
                self.out[path] = entry
                try:
                    sub_fd = fsops.open_dir_at(fd, name)
                except (FileNotFoundError, fsops.Refused):
                    return
                try:
                    self.tree(sub_fd, path)
                finally:
                    os.close(sub_fd)
        finally:
            os.close(fd)

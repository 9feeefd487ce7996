"""Scanning a sync root into a Snapshot.

Owns: the tree walk that decides what one side *is*: which names are listed, which are
skipped (pruned, our temp files, escaping symlinks, special files, names that cannot cross
the wire), which paths could not be read (their state is *unknown*, never "gone") and the
Entry of each. May import: the standard library, ``podsync.core``, ``replica.fsops``. Ships
inside the container agent.

Names are listed whatever their bytes: ``os.scandir`` gives each as the canonical
surrogateescape ``str`` (see ``core.paths``), which is synced byte-exact. Only a backslash
(not portable, and the separator of the other side's OS) keeps a name out, and, on a Python
whose file system encoding is not UTF-8, any non-ASCII name (its ``str`` would stand for
other bytes on the other side).

Speed matters (a 10k-file tree is rescanned on every overflow/reconnect): directories and
symlinks are classified from ``d_type`` without a stat call, and only regular files are
lstat'ed (through the directory fd, so a swapped-in symlink is never followed).
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
import sys
from typing import Callable, List, Optional, Tuple

from podsync.core.entry import DIR, FILE, LINK, Entry, Snapshot, new_entry
from podsync.core.paths import RelPath, symlink_stays_inside
from podsync.replica import fsops

Prune = Callable[[str, bool], bool]

#: ``os.fsdecode`` here is UTF-8/surrogateescape, the encoding RelPaths are defined in.
FS_UTF8 = (
    codecs.lookup(sys.getfilesystemencoding()).name == "utf-8"
    and sys.getfilesystemencodeerrors() == "surrogateescape"
)
_FOREIGN = (
    f"is not ASCII and this Python's file system encoding is {sys.getfilesystemencoding()}, "
    "not UTF-8 (run python3 with -X utf8)"
)


def name_problem(name: str) -> Optional[str]:
    """Why a file name found on disk cannot be synced, or None when it can."""
    if "\\" in name:
        return "contains a backslash"
    if not FS_UTF8 and not name.isascii():
        return _FOREIGN
    return None


def special_kind(mode: int) -> str:
    """What a non-file, non-directory, non-symlink is, for the one warning about it."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file, directory or symlink"


def os_reason(exc: OSError) -> str:
    """What an OSError means, in the words of the OS (``Permission denied``)."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "it was replaced by a file or a symlink while being read"
    return exc.strerror or str(exc)


def link_target_ok(link: RelPath, target: str) -> bool:
    """True when a symlink at ``link`` to ``target`` may be synced: it stays inside the root
    lexically (``core.paths.symlink_stays_inside``, which also refuses a non-canonical
    target) and has no ``..`` after a name. The second rule matters because ``x/..`` is
    resolved through ``x``, which may itself be a symlink to a deeper directory, so
    ``x/../../y`` can leave the root on disk even though it stays inside on paper."""
    if not symlink_stays_inside(link, target) or name_problem(target):
        return False
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    return ".." not in parts[ups:]


class Scanner:
    """One scan run: fills ``out``, reports skipped paths through ``warn`` and records in
    ``unknown`` the paths whose state could not be read (an unlistable directory's content,
    an entry that could not be lstat'ed or readlink'ed). A path in ``unknown`` is not in
    ``out`` (or, for a directory, its children are not): the caller must keep what it knew
    there, never read the absence as a deletion."""

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
        #: Directories that could not be opened or listed (filled by ``fsops.walk``).
        self.errors: List[Tuple[RelPath, OSError]] = []
        #: Entries that were listed but could not be read (lstat, readlink).
        self.unknown: List[Tuple[RelPath, OSError]] = []
        self.out: Snapshot = {}

    def tree(self, top_fd: int, top: RelPath) -> None:
        """Add every listable entry below the directory ``top_fd`` (at ``top``)."""
        out = self.out
        prune = self.prune
        prefix = self.temp_prefix
        foreign = not FS_UTF8
        for fd, rel, entries, descend in fsops.walk(top_fd, top, self.errors):
            base = rel + "/" if rel else ""
            for de in entries:
                name = de.name
                if name.startswith(prefix):
                    continue
                path = RelPath(base + name)
                if "\\" in name or (foreign and not name.isascii()):
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
                    elif de.is_symlink():
                        if not prune(path, False):
                            self.link(fd, name, path)
                    elif not prune(path, False):
                        self.special(de, path)
                except FileNotFoundError:
                    continue  # vanished since the listing; the next scan agrees
                except OSError as exc:
                    self.unreadable_entry(path, exc)

    def unreadable_entry(self, path: RelPath, exc: OSError) -> None:
        self.unknown.append((path, exc))
        self.warn(path, f"skipped: cannot be read ({os_reason(exc)}); left alone on both sides")

    def special(self, de: "os.DirEntry[str]", path: RelPath) -> None:
        """fifos, sockets and devices are never synced: one warning each."""
        kind = special_kind(de.stat(follow_symlinks=False).st_mode)
        self.warn(path, f"skipped: {kind} is never synced")

    def link(self, dir_fd: int, name: str, path: RelPath) -> None:
        """Add the symlink ``name`` (readlink errors propagate as OSError)."""
        target = os.readlink(name, dir_fd=dir_fd)
        problem = name_problem(target)
        if problem:
            self.warn(path, f"skipped: symlink target {problem}")
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
            return  # gone, or a parent is no directory: nothing there
        except OSError as exc:  # a parent cannot be searched: unknown, not gone
            self.unreadable_entry(path, exc)
            return
        try:
            self._one_at(fd, name, path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.unreadable_entry(path, exc)
        finally:
            os.close(fd)

    def _one_at(self, fd: int, name: str, path: RelPath) -> None:
        st = fsops.lstat_at(fd, name)
        if st is None:
            return
        if stat.S_ISLNK(st.st_mode):
            if not self.prune(path, False):
                self.link(fd, name, path)
            return
        entry = fsops.entry_from_stat(st, fd, name)
        if self.prune(path, entry is not None and entry.kind == DIR):
            return
        if entry is None:
            self.warn(path, f"skipped: {special_kind(st.st_mode)} is never synced")
        elif entry.kind == FILE:
            self.out[path] = entry
        else:
            self.out[path] = entry
            try:
                sub_fd = fsops.open_dir_at(fd, name)
            except (FileNotFoundError, fsops.Refused):
                return
            except OSError as exc:
                self.errors.append((path, exc))
                return
            try:
                self.tree(sub_fd, path)
            finally:
                os.close(sub_fd)


def remove_temps(root_fd: int, temp_prefix: str, skip: Optional[RelPath], prune: Prune) -> int:
    """Unlink the temp files (``temp_prefix``*) a crashed run left anywhere below the root,
    except in pruned directories and ``skip`` (the trash); returns how many went."""
    removed = 0
    errors: List[Tuple[RelPath, OSError]] = []
    for fd, rel, entries, descend in fsops.walk(root_fd, RelPath(""), errors):
        for de in entries:
            path = RelPath(f"{rel}/{de.name}" if rel else de.name)
            is_dir = de.is_dir(follow_symlinks=False)
            if de.name.startswith(temp_prefix):
                if not is_dir:
                    removed += _unlink_quietly(fd, de.name)
            elif is_dir and path != skip and not prune(path, True):
                descend.append(de.name)
    return removed


def _unlink_quietly(dir_fd: int, name: str) -> int:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return 1
    except OSError:
        return 0

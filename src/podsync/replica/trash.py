"""The local trash: what sync deletes or replaces on this machine is kept, never destroyed.

Owns: the layout ``<trash_dir>/<UTC timestamp>/<relpath>`` and how a path gets there (hard
link for a file about to be replaced, rename for a path being deleted, copy when either
crosses filesystems). May import: the standard library and ``replica.fsops``.

The trash directory is chosen by the engine (trusted); paths below it come from the sync
root and are created with the same dir-fd walk as everything else.
"""

from __future__ import annotations

import errno
import os
import time

from podsync.core.paths import RelPath
from podsync.replica import fsops


class Trash:
    def __init__(self, trash_dir: str) -> None:
        self.dir = os.path.abspath(trash_dir)

    def _stamp(self) -> str:
        now = time.time()
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))

    def preserve(self, src_fd: int, name: str, path: RelPath, move: bool) -> str:
        """Keep ``name`` (in directory ``src_fd``, at ``path`` in the root) in the trash.

        ``move`` renames it away (delete); otherwise a hard link (or copy) is made and the
        original stays for the caller to replace atomically. Returns the trash path.
        """
        stamp_dir = os.path.join(self.dir, self._stamp())
        os.makedirs(stamp_dir, mode=0o700, exist_ok=True)
        top = os.open(stamp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            dst_fd, base = fsops.walk_parent(top, path, create=True)
        finally:
            os.close(top)
        try:
            dst = self._free_name(dst_fd, base)
            self._put(src_fd, name, dst_fd, dst, move)
        finally:
            os.close(dst_fd)
        return os.path.join(stamp_dir, *path.split("/")[:-1], dst)

    @staticmethod
    def _free_name(dir_fd: int, base: str) -> str:
        """``base``, or ``base.1``, ``base.2``... when the same path was trashed this second."""
        candidate, n = base, 0
        while fsops.lstat_at(dir_fd, candidate) is not None:
            n += 1
            candidate = f"{base}.{n}"
        return candidate

    @staticmethod
    def _put(src_fd: int, name: str, dst_fd: int, dst: str, move: bool) -> None:
        try:
            if move:
                os.rename(name, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            else:
                os.link(name, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            return
        except OSError as exc:
            # Other filesystem, hard links not allowed there, or a directory to link:
            # fall back to a copy (and removal, for a move).
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EISDIR):
                raise
        fsops.copy_at(src_fd, name, dst_fd, dst)
        if move:
            fsops.remove_at(src_fd, name)

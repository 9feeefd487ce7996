"""Directory-fd primitives that never follow a symlink out of the sync root.

Owns: walking a RelPath component by component from a root fd (``O_NOFOLLOW`` at every
step), lstat-to-Entry conversion, fd-based recursive removal and copy, and the tree walker
the scanner and the temp cleaner share. May import: the standard library, ``podsync.core``
and ``podsync.errors``. Ships inside the container agent (Python 3.9, stdlib only).

Every function takes directory fds and single names, never joined path strings, so a
directory inside the root that is swapped for a symlink between two calls cannot redirect a
create, rename or unlink to a place outside the root: opening it with ``O_NOFOLLOW`` fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Iterator, List, Optional, Tuple

from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.paths import RelPath, printable
from podsync.errors import SafetyHalt

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK so that opening a fifo someone swapped in never blocks us.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_CHUNK = 1 << 20

DIR_ENTRY = Entry(DIR)


class Refused(Exception):
    """A per-path reason to leave a path alone; the public API turns it into a Problem."""


def open_root(root: str) -> int:
    """Open the root directory itself (the user chose it, so a symlinked root is followed)."""
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SafetyHalt(f"the sync folder {root} does not exist (any more)") from None
    except NotADirectoryError:
        raise SafetyHalt(f"the sync folder {root} is not a directory") from None
    except OSError as exc:
        raise SafetyHalt(f"the sync folder {root} cannot be opened: {exc.strerror}") from None


def open_dir_at(dir_fd: int, name: str) -> int:
    """Open child directory ``name``; Refused when it is a file or a symlink."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # no such name can exist (the peer asked)
            raise FileNotFoundError(errno.ENOENT, exc.strerror, name) from None
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            shown = printable(name)
            raise Refused(f"'{shown}' is not a directory (a file or a symlink is there)") from None
        raise


def walk_parent(root_fd: int, path: RelPath, create: bool) -> Tuple[int, str]:
    """Return (fd of the directory holding ``path``, last component); the caller closes the fd.

    Missing parents raise FileNotFoundError, or are created (mode 0o755) when ``create``.
    """
    parts = path.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                child = open_dir_at(fd, part)
            except FileNotFoundError:
                if not create:
                    raise
                # FileExistsError: a concurrent creator won; the open below checks what it made
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = open_dir_at(fd, part)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def lstat_at(dir_fd: int, name: str) -> Optional[os.stat_result]:
    """lstat ``name``; None when it does not exist (or is too long to exist). Other errors
    (EACCES: the directory cannot be searched) raise: the path's state is unknown."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return None
        raise


def entry_from_stat(st: os.stat_result, dir_fd: int, name: str) -> Optional[Entry]:
    """The Entry for an lstat result; None for special files (fifo, socket, device)."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return Entry(FILE, st.st_size, st.st_mtime_ns, bool(mode & stat.S_IXUSR))
    if stat.S_ISDIR(mode):
        return DIR_ENTRY
    if stat.S_ISLNK(mode):
        try:
            return Entry(LINK, target=os.readlink(name, dir_fd=dir_fd))
        except FileNotFoundError:
            return None
    return None


def entry_at(dir_fd: int, name: str) -> Optional[Entry]:
    st = lstat_at(dir_fd, name)
    return None if st is None else entry_from_stat(st, dir_fd, name)


def remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a directory with everything below it); never follows symlinks."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        # Linux says EISDIR for a directory; POSIX allows EPERM, which also means "not
        # allowed" (sticky directory, immutable file): only a real directory is emptied,
        # anything else keeps its own error (not "is not a directory").
        if exc.errno not in (errno.EISDIR, errno.EPERM):
            raise
        st = lstat_at(dir_fd, name)
        if st is None:
            return
        if not stat.S_ISDIR(st.st_mode):
            raise
    fd = open_dir_at(dir_fd, name)
    try:
        with os.scandir(fd) as it:
            children = list(it)
        for child in children:
            if child.is_dir(follow_symlinks=False):
                remove_at(fd, child.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(child.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def copy_at(src_fd: int, name: str, dst_fd: int, dst_name: str) -> None:
    """Copy ``name`` (file, symlink or directory tree) into ``dst_fd`` keeping mtimes and
    modes; used when a hard link or rename into the trash crosses filesystems."""
    st = lstat_at(src_fd, name)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src_fd), dst_name, dir_fd=dst_fd)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dst_name, 0o700, dir_fd=dst_fd)
        sfd = open_dir_at(src_fd, name)
        dfd = open_dir_at(dst_fd, dst_name)
        try:
            with os.scandir(sfd) as it:
                names = [c.name for c in it]
            for child in names:
                copy_at(sfd, child, dfd, child)
            os.fchmod(dfd, stat.S_IMODE(st.st_mode))
        finally:
            os.close(sfd)
            os.close(dfd)
    elif stat.S_ISREG(st.st_mode):
        _copy_file(src_fd, name, dst_fd, dst_name, st)


def _copy_file(src_fd: int, name: str, dst_fd: int, dst_name: str, st: os.stat_result) -> None:
    rfd = os.open(name, READ_FLAGS, dir_fd=src_fd)
    try:
        wfd = os.open(dst_name, CREATE_FLAGS, 0o600, dir_fd=dst_fd)
        try:
            while True:
                chunk = os.read(rfd, COPY_CHUNK)
                if not chunk:
                    break
                write_all(wfd, chunk)
            os.fchmod(wfd, stat.S_IMODE(st.st_mode) & 0o777)
            os.utime(wfd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(wfd)
    finally:
        os.close(rfd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


WalkItem = Tuple[int, RelPath, List["os.DirEntry[str]"], List[str]]


def walk(top_fd: int, top: RelPath, errors: List[Tuple[RelPath, OSError]]) -> Iterator[WalkItem]:
    """Depth-first walk from the directory ``top_fd`` (at ``top``), which stays the caller's.

    Yields ``(dir_fd, rel, entries, descend)`` per directory; the caller appends to
    ``descend`` the names of the child directories to enter (like ``os.walk``'s dirnames).
    Only one fd per level is open. Directories that cannot be opened or listed are recorded
    in ``errors`` (a swapped-in symlink is never entered: it fails with ``O_NOFOLLOW``).
    """
    stack: List[Tuple[int, RelPath, Iterator[str]]] = []
    fd: int = os.dup(top_fd)
    rel = top
    try:
        while True:
            entries: List[os.DirEntry[str]] = []
            try:
                with os.scandir(fd) as it:
                    entries = list(it)
            except OSError as exc:
                errors.append((rel, exc))
            descend: List[str] = []
            yield fd, rel, entries, descend
            stack.append((fd, rel, iter(descend)))
            fd = -1
            while stack:
                pfd, prel, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(pfd)
                    stack.pop()
                    continue
                child_rel = RelPath(f"{prel}/{name}" if prel else name)
                try:
                    fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    errors.append((child_rel, exc))
                    continue
                rel = child_rel
                break
            if fd == -1:
                return
    finally:
        if fd != -1:
            os.close(fd)
        for pfd, _, _ in stack:
            os.close(pfd)

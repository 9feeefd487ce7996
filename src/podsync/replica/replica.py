"""One folder on one side: scan it, read from it, change it safely.

Owns: :class:`Replica`, used by the engine for the local folder and by the agent inside the
container. May import: the standard library, ``podsync.core``, ``podsync.errors`` and the
other ``replica`` modules (removing what a write replaces or a delete removes is
``replica.discard``'s). Ships inside the container agent (Python 3.9, stdlib only).

Whatever the other side sends is untrusted. Every operation starts from a freshly opened
root fd and walks to its target component by component with ``O_NOFOLLOW`` (see
``fsops``), so nothing outside the root is ever created, changed or removed, even when a
directory inside it is swapped for a symlink. Per-path trouble is returned as a
:class:`Problem`; only a missing root raises (:class:`SafetyHalt`).
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import BinaryIO, List, Optional, Sequence, Set, Tuple, Union

from podsync.core.entry import ANY, DIR, FILE, LINK, Entry, Expect, Problem, Snapshot
from podsync.core.paths import (
    RelPath,
    ancestors,
    basename,
    canonical,
    is_within,
    minimal_roots,
    printable,
)
from podsync.errors import SafetyHalt
from podsync.replica import fsops
from podsync.replica.discard import discard
from podsync.replica.scan import (
    Prune,
    Scanner,
    link_target_ok,
    name_problem,
    os_reason,
    remove_temps,
)
from podsync.replica.trash import Trash
from podsync.replica.writer import FileWriter, file_mode

CHANGED = "changed on this side meanwhile; left as is"
DIGEST_CHUNK = 1 << 20


def _no_prune(path: str, is_dir: bool) -> bool:
    return False


class Replica:
    """A sync root on this machine.

    Operations keep no state between calls (each opens the root afresh) except the
    ``warnings``/``unreadable`` lists, so one Replica may serve a scanning thread and a
    writing thread at once.
    """

    #: Clock granularity of the mtimes reported and set (Linux keeps nanoseconds).
    mtime_granularity_ns: int = 1

    def __init__(
        self,
        root: str,
        prune: Prune = _no_prune,
        trash_dir: Optional[str] = None,
        temp_prefix: str = ".podsync-tmp-",
        fsync: bool = False,
    ) -> None:
        self.root = os.path.abspath(root)
        self.prune = prune
        self.temp_prefix = temp_prefix
        #: fsync each file before its rename and its directory after (durable across power
        #: loss; slower). Off by default: the rename alone already guarantees no torn file.
        self.fsync = fsync
        self.trash: Optional[Trash] = Trash(trash_dir) if trash_dir else None
        self.trash_rel = self._inside_root(trash_dir) if trash_dir else None
        #: Human-readable notes about skipped paths; the caller drains (logs and clears) it.
        self.warnings: List[str] = []
        #: Paths the last scan could not read (unlistable directories, entries that could
        #: not be lstat'ed): unknown, not gone; keep what was known there (keep_unknown).
        self.unreadable: List[RelPath] = []
        self._warned: Set[Tuple[RelPath, str]] = set()

    def _inside_root(self, path: str) -> Optional[RelPath]:
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if real == real_root or not real.startswith(real_root.rstrip("/") + "/"):
            return None
        return RelPath(os.path.relpath(real, real_root))

    def _warn(self, path: RelPath, message: str) -> None:
        # Each skipped path is reported once per Replica, not on every rescan.
        if (path, message) not in self._warned:
            self._warned.add((path, message))
            # Text to show (sent as JSON, logged): escaped, so no consumer can choke on it.
            self.warnings.append(printable(f"{path}: {message}"))

    # ----------------------------------------------------------------- reading

    def scan(self, under: Sequence[RelPath] = ()) -> Snapshot:
        """Entries below the root (or, with ``under``, those paths and their subtrees)."""
        root_fd = fsops.open_root(self.root)
        scanner = Scanner(self.prune, self.temp_prefix, self.trash_rel, self._warn)
        try:
            for top in minimal_roots(list(under)) if under else [RelPath("")]:
                if top == "":
                    scanner.tree(root_fd, top)
                else:
                    scanner.one(root_fd, top)
            self._check_root_still(root_fd)
        finally:
            os.close(root_fd)
        self.unreadable = [p for p, _ in scanner.errors] + [p for p, _ in scanner.unknown]
        for p, exc in scanner.errors:
            self._warn(p, f"could not be read ({os_reason(exc)}); its contents are left alone")
        return scanner.out

    def _check_root_still(self, root_fd: int) -> None:
        """A root deleted during the scan lists as empty: that must halt, not sync deletions."""
        before = os.fstat(root_fd)
        try:
            now = os.stat(self.root)
        except OSError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise SafetyHalt(f"the sync folder {self.root} vanished or was replaced during a scan")

    def entry(self, path: RelPath) -> Optional[Entry]:
        """What is at ``path`` now (lstat; a symlink is reported as a link, never followed).
        None when nothing is there; OSError when it cannot be looked at (permission denied
        on a parent, I/O error): that is not "gone"."""
        root_fd = fsops.open_root(self.root)
        if path == "":
            os.close(root_fd)
            return fsops.DIR_ENTRY
        try:
            fd, name = fsops.walk_parent(root_fd, path, create=False)
        except (FileNotFoundError, fsops.Refused):
            return None
        finally:
            os.close(root_fd)
        try:
            return fsops.entry_at(fd, name)
        finally:
            os.close(fd)

    def open_read(self, path: RelPath) -> Optional[Tuple[Entry, BinaryIO]]:
        """Open a regular file for reading; its Entry comes from the open fd (fstat), so it
        describes exactly the content read. None when gone or not a regular file."""
        if path == "":
            return None
        root_fd = fsops.open_root(self.root)
        try:
            dir_fd, name = fsops.walk_parent(root_fd, path, create=False)
        except (OSError, fsops.Refused):
            return None  # gone, or a parent is no directory or cannot be searched
        finally:
            os.close(root_fd)
        try:
            fd = os.open(name, fsops.READ_FLAGS, dir_fd=dir_fd)
        except OSError:
            return None  # gone, a symlink (ELOOP), or unreadable
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None
        entry = Entry(FILE, st.st_size, st.st_mtime_ns, bool(st.st_mode & stat.S_IXUSR))
        return entry, os.fdopen(fd, "rb")

    def digest(self, path: RelPath) -> Optional[str]:
        """Hex SHA-256 of the file's content; None when it is not a regular file now."""
        opened = self.open_read(path)
        if opened is None:
            return None
        h = hashlib.sha256()
        try:
            with opened[1] as f:
                for chunk in iter(lambda: f.read(DIGEST_CHUNK), b""):
                    h.update(chunk)
        except OSError:  # EIO mid-file: no digest, so the planner does not call it equal
            return None
        return h.hexdigest()

    # ----------------------------------------------------------------- writing

    def _refusal(self, path: RelPath, is_dir: Optional[bool]) -> Optional[str]:
        """Why sync must not change ``path`` (None when it may). ``is_dir`` None: the kind
        is not known yet, so the path's own exclusion is checked later."""
        if path == "":
            return "the sync folder itself cannot be replaced or removed"
        if not canonical(path):  # relpath() refuses these at the edge; never reach os here
            return "the name is not a canonical file name"
        for part in path.split("/"):
            if part.startswith(self.temp_prefix):
                return "the name is reserved for podsync's temporary files"
            problem = name_problem(part)
            if problem:
                return f"the name {problem}"
        if self.trash_rel is not None and is_within(path, self.trash_rel):
            return "it lies inside podsync's trash"
        if any(self.prune(a, True) for a in ancestors(path)):
            return "it is excluded from sync"
        if is_dir is not None and self.prune(path, is_dir):
            return "it is excluded from sync"
        return None

    def _expect_ok(self, expect: Expect, current: Optional[Entry]) -> bool:
        if expect is ANY:
            return True
        if isinstance(expect, Entry):
            return expect.same_content(current, self.mtime_granularity_ns)
        return current is None

    def _open_parent(self, path: RelPath) -> Tuple[int, str]:
        root_fd = fsops.open_root(self.root)
        try:
            return fsops.walk_parent(root_fd, path, create=True)
        finally:
            os.close(root_fd)

    def _discard(self, dir_fd: int, name: str, path: RelPath) -> None:
        discard(dir_fd, name, path, self.prune, self.trash, self.temp_prefix)

    def _temp_name(self) -> str:
        return f"{self.temp_prefix}{os.getpid()}-{os.urandom(6).hex()}"

    def _install(
        self, dir_fd: int, temp: str, path: RelPath, expect: Expect
    ) -> Union[Entry, Problem]:
        """Rename ``temp`` over ``path`` if it still matches ``expect`` (checked last thing)."""
        name = basename(path)
        # What we install, as a scan will see it: reported instead of what is there after the
        # rename, since a write that lands right after it is someone else's change and must be
        # seen as one (taken as ours, the next sync overwrote it without a conflict copy).
        st = fsops.lstat_at(dir_fd, temp)
        ours = None if st is None else fsops.entry_from_stat(st, dir_fd, temp)
        if ours is None:
            return Problem(path, "its temporary file vanished before it could be put in place")
        current = fsops.entry_at(dir_fd, name)
        if not self._expect_ok(expect, current):
            return Problem(path, CHANGED)
        if current is not None:
            if current.kind == DIR:
                self._discard(dir_fd, name, path)
            elif self.trash is not None:
                self.trash.preserve(dir_fd, name, path, move=False)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        if self.fsync:
            os.fsync(dir_fd)  # make the rename itself durable, not just the content
        if fsops.lstat_at(dir_fd, name) is None:
            return Problem(path, "removed by someone else right after it was written")
        return ours

    def begin_write(self, path: RelPath, entry: Entry, expect: Expect) -> FileWriter:
        """Start streaming a file to ``path``; see :class:`FileWriter`."""
        refusal = self._refusal(path, False) if entry.kind == FILE else "not a regular file"
        if refusal is not None:
            return FileWriter(self, path, entry, expect, problem=refusal)
        dir_fd = -1
        try:
            dir_fd, name = self._open_parent(path)
            st = fsops.lstat_at(dir_fd, name)
            current = None if st is None else fsops.entry_from_stat(st, dir_fd, name)
            if not self._expect_ok(expect, current):
                os.close(dir_fd)
                return FileWriter(self, path, entry, expect, problem=CHANGED)
            existing = st.st_mode if st is not None and stat.S_ISREG(st.st_mode) else None
            temp = self._temp_name()
            fd = os.open(temp, fsops.CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        except (OSError, fsops.Refused) as exc:
            if dir_fd != -1:
                os.close(dir_fd)
            return FileWriter(self, path, entry, expect, problem=_reason(exc))
        mode = file_mode(entry.executable, existing)
        return FileWriter(self, path, entry, expect, dir_fd=dir_fd, temp=temp, fd=fd, mode=mode)

    def make_dir(self, path: RelPath, entry: Entry, expect: Expect) -> Union[Entry, Problem]:
        """Create a directory (parents too); an existing directory is success."""
        refusal = self._refusal(path, True)
        if refusal is not None:
            return Problem(path, refusal)
        try:
            dir_fd, name = self._open_parent(path)
        except (OSError, fsops.Refused) as exc:
            return Problem(path, _reason(exc))
        try:
            current = fsops.entry_at(dir_fd, name)
            if current is not None and current.kind == DIR:
                return current
            if not self._expect_ok(expect, current):
                return Problem(path, CHANGED)
            if current is not None:
                self._discard(dir_fd, name, path)
            os.mkdir(name, 0o755, dir_fd=dir_fd)
            return fsops.DIR_ENTRY
        except (OSError, fsops.Refused) as exc:
            return Problem(path, _reason(exc))
        finally:
            os.close(dir_fd)

    def make_link(self, path: RelPath, entry: Entry, expect: Expect) -> Union[Entry, Problem]:
        """Create or replace a symlink; targets leaving the root are refused."""
        target = entry.target
        if entry.kind != LINK or target is None:
            return Problem(path, "not a symlink")
        if not link_target_ok(path, target):
            return Problem(path, f"symlink target '{target}' leaves the sync folder; not created")
        refusal = self._refusal(path, False)
        if refusal is not None:
            return Problem(path, refusal)
        try:
            dir_fd, _ = self._open_parent(path)
        except (OSError, fsops.Refused) as exc:
            return Problem(path, _reason(exc))
        temp = self._temp_name()
        try:
            os.symlink(target, temp, dir_fd=dir_fd)
            result = self._install(dir_fd, temp, path, expect)
        except (OSError, fsops.Refused) as exc:
            result = Problem(path, _reason(exc))
        try:
            if isinstance(result, Problem):
                os.unlink(temp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dir_fd)
        return result

    def delete(self, path: RelPath, expect: Expect) -> Optional[Problem]:
        """Remove ``path`` (recursively) if it still matches ``expect``; into the trash when
        one is configured. Already gone is success."""
        refusal = self._refusal(path, None)
        if refusal is not None:
            return Problem(path, refusal)
        root_fd = fsops.open_root(self.root)
        try:
            dir_fd, name = fsops.walk_parent(root_fd, path, create=False)
        except FileNotFoundError:
            return None
        except (OSError, fsops.Refused) as exc:
            return Problem(path, _reason(exc))
        finally:
            os.close(root_fd)
        try:
            current = fsops.entry_at(dir_fd, name)
            if current is None:
                return None
            if self.prune(path, current.kind == DIR):
                return Problem(path, "it is excluded from sync")
            if not self._expect_ok(expect, current):
                return Problem(path, CHANGED)
            self._discard(dir_fd, name, path)
            return None
        except (OSError, fsops.Refused) as exc:
            return Problem(path, _reason(exc))
        finally:
            os.close(dir_fd)

    def cleanup_temps(self) -> int:
        """Remove temp files a crashed run left behind (call before syncing starts)."""
        root_fd = fsops.open_root(self.root)
        try:
            return remove_temps(root_fd, self.temp_prefix, self.trash_rel, self.prune)
        finally:
            os.close(root_fd)


def _reason(exc: Union[OSError, fsops.Refused]) -> str:
    if isinstance(exc, fsops.Refused):
        return str(exc)
    return f"could not change it: {exc.strerror or exc}"


__all__ = ["CHANGED", "FileWriter", "Replica"]

"""Change hints for one sync root: inotify (recursive, via ctypes) or polling.

Owns: :class:`Watcher` (inotify, falling back to polling by itself when the kernel refuses
an instance or runs out of watches), :class:`PollingWatcher` and :func:`make_watcher`. May
import: the standard library, ``podsync.core``, ``podsync.limits``, ``podsync.errors`` and
the other ``replica`` modules. Ships inside the container agent.

Watch events are *hints*: a path whose entry (file or directory) may have changed; ``""``
means "rescan everything" (queue overflow, root moved, watch limit hit). The scan of the
hinted paths is the truth, so a hint too many costs a stat, a hint too few would lose a
change: when in doubt we hint the directory. Both watchers block in the kernel (poll on the
inotify fd, or an Event wait between polls), so an idle watcher costs no CPU, and both may
be waited on from a background thread and closed from another.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Set, Union

from podsync.core.entry import Snapshot
from podsync.core.paths import RelPath, is_within
from podsync.errors import SafetyHalt
from podsync.limits import POLL_INTERVAL_SECONDS
from podsync.replica import fsops
from podsync.replica.replica import Replica
from podsync.replica.scan import Prune, name_problem

if TYPE_CHECKING:
    from podsync.replica.inotify import Event, Inotify

RESCAN = RelPath("")
DEFAULT_TEMP_PREFIX = ".podsync-tmp-"


def _no_prune(path: str, is_dir: bool) -> bool:
    return False


def inotify_available() -> bool:
    if os.environ.get("PODSYNC_FORCE_POLLING") == "1":
        return False
    try:
        from podsync.replica import inotify
    except ImportError:  # a Python built without ctypes
        return False
    return inotify.available()


def _finish(hints: Set[RelPath]) -> List[RelPath]:
    return [RESCAN] if RESCAN in hints else sorted(hints)


class PollingWatcher:
    """Rescans every ``interval`` seconds and hints the paths whose stat changed."""

    mode = "polling"

    def __init__(
        self,
        root: str,
        prune: Prune = _no_prune,
        temp_prefix: str = DEFAULT_TEMP_PREFIX,
        interval: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self._replica = Replica(root, prune=prune, temp_prefix=temp_prefix)
        self.interval = interval
        self._stop = threading.Event()
        self._prev: Snapshot = {}
        self._missing = False
        self._next_poll = 0.0

    def start(self) -> None:
        self._prev = self._replica.scan()  # SafetyHalt when the root is missing
        self._next_poll = time.monotonic() + self.interval

    def wait(self, timeout: float) -> List[RelPath]:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            now = time.monotonic()
            if self._next_poll > deadline:
                self._stop.wait(max(0.0, deadline - now))
                return []
            if self._stop.wait(max(0.0, self._next_poll - now)):
                return []
            self._next_poll = time.monotonic() + self.interval
            hints = self._poll()
            if hints:
                return hints
        return []

    def _poll(self) -> List[RelPath]:
        try:
            current = self._replica.scan()
        except SafetyHalt:
            if self._missing:
                return []
            self._missing = True
            return [RESCAN]
        del self._replica.warnings[:]
        prev, self._prev = self._prev, current
        if self._missing:
            self._missing = False
            return [RESCAN]
        changed = {p for p, e in current.items() if prev.get(p) != e}
        changed.update(p for p in prev if p not in current)
        return sorted(changed)

    def close(self) -> None:
        self._stop.set()


class Watcher:
    """Recursive inotify watcher over the non-pruned directories of ``root``."""

    def __init__(
        self, root: str, prune: Prune = _no_prune, temp_prefix: str = DEFAULT_TEMP_PREFIX
    ) -> None:
        self.root = os.path.abspath(root)
        self.prune = prune
        self.temp_prefix = temp_prefix
        #: "inotify", or "polling" after falling back.
        self.mode = "inotify"
        self._ino: Optional[Inotify] = None
        self._poller: Optional[PollingWatcher] = None
        self._wd_path: Dict[int, RelPath] = {}
        self._path_wd: Dict[RelPath, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()

    # ------------------------------------------------------------------ setup

    def start(self) -> None:
        if not os.path.isdir(self.root):
            raise SafetyHalt(f"the sync folder {self.root} does not exist (any more)")
        if not inotify_available():
            self._use_polling()
            return
        from podsync.replica.inotify import Inotify

        try:
            self._ino = Inotify()
            self._add_tree(RESCAN)
            if RESCAN not in self._path_wd:
                raise OSError("the sync folder itself cannot be watched")
        except OSError:
            # No instance left (EMFILE) or too many directories for the watch limit
            # (ENOSPC): polling is slower but never misses a change.
            self._use_polling()

    def _use_polling(self) -> None:
        if self._ino is not None:
            self._ino.close()
            self._ino = None
        self._wd_path.clear()
        self._path_wd.clear()
        poller = PollingWatcher(self.root, self.prune, self.temp_prefix)
        poller.start()
        self._poller = poller
        self.mode = "polling"

    def _add_tree(self, top: RelPath) -> None:
        """Watch ``top`` and every non-pruned directory below it. Each directory is watched
        before it is listed, so a subdirectory created meanwhile is either listed or
        reported. Raises OSError(ENOSPC) when the watch limit is hit."""
        stack = [top]
        while stack:
            rel = stack.pop()
            try:
                with _dir_path(self.root, rel) as path:
                    self._add_dir(rel, path, stack)
            except (OSError, fsops.Refused, SafetyHalt) as exc:
                if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.ENOMEM):
                    raise
                continue  # vanished, not a directory (any more), or unreadable

    def _add_dir(self, rel: RelPath, path: str, stack: List[RelPath]) -> None:
        ino = self._ino
        assert ino is not None
        wd = ino.add_watch(path)
        old = self._wd_path.get(wd)
        if old is not None and old != rel:
            self._path_wd.pop(old, None)
        self._wd_path[wd] = rel
        self._path_wd[rel] = wd
        try:
            with os.scandir(path) as it:
                for de in it:
                    if de.is_dir(follow_symlinks=False) and self._wanted(rel, de.name, True):
                        stack.append(RelPath(f"{rel}/{de.name}" if rel else de.name))
        except OSError:
            return  # unreadable: watched, its content is not

    def _wanted(self, parent: RelPath, name: str, is_dir: bool) -> bool:
        if name.startswith(self.temp_prefix) or name_problem(name):
            return False
        return not self.prune(f"{parent}/{name}" if parent else name, is_dir)

    def _drop_tree(self, top: RelPath) -> None:
        """Forget the watches of a directory moved away or deleted (and its subtree)."""
        assert self._ino is not None
        for path, wd in list(self._path_wd.items()):
            if is_within(path, top):
                self._ino.rm_watch(wd)
                del self._path_wd[path]
                self._wd_path.pop(wd, None)

    # ------------------------------------------------------------------ events

    def _handle(self, events: List[Event]) -> Set[RelPath]:
        from podsync.replica import inotify as i

        hints: Set[RelPath] = set()
        for ev in events:
            if ev.mask & (i.IN_Q_OVERFLOW | i.IN_UNMOUNT):
                if RESCAN not in hints:
                    # Lost events may include new directories: watch whatever is there now.
                    self._add_tree(RESCAN)
                hints.add(RESCAN)
                continue
            if ev.mask & i.IN_IGNORED:
                rel = self._wd_path.pop(ev.wd, None)
                if rel is not None and self._path_wd.get(rel) == ev.wd:
                    del self._path_wd[rel]
                continue
            parent = self._wd_path.get(ev.wd)
            if parent is None:
                continue  # a watch we already dropped
            if not ev.name:
                if ev.mask & (i.IN_DELETE_SELF | i.IN_MOVE_SELF):
                    hints.add(parent)  # the root itself: "" = rescan all
                continue
            name = os.fsdecode(ev.name)
            is_dir = bool(ev.mask & i.IN_ISDIR)
            if not self._wanted(parent, name, is_dir):
                continue
            path = RelPath(f"{parent}/{name}" if parent else name)
            hints.add(path)
            if is_dir and ev.mask & (i.IN_MOVED_FROM | i.IN_DELETE):
                self._drop_tree(path)
            if is_dir and ev.mask & (i.IN_CREATE | i.IN_MOVED_TO):
                self._add_tree(path)  # and the hint on it covers what it already holds
        return hints

    def wait(self, timeout: float) -> List[RelPath]:
        """Block up to ``timeout`` seconds for changes; return the hinted paths ([] if none)."""
        with self._lock:
            if self._closed:
                return []
            if self._poller is not None:
                return self._poller.wait(timeout)
            return self._wait_inotify(timeout)

    def _wait_inotify(self, timeout: float) -> List[RelPath]:
        ino = self._ino
        assert ino is not None
        poller = select.poll()
        poller.register(ino.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            ready = poller.poll(remaining * 1000.0)
            if self._closed:
                return []
            if not ready:
                continue
            try:
                hints = self._handle(ino.read())
            except OSError:
                self._use_polling()  # watch limit reached while following new directories
                return [RESCAN]
            if hints:
                return _finish(hints)
        return []

    def close(self) -> None:
        """Stop watching; wakes a thread blocked in :meth:`wait`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        poller = self._poller
        if poller is not None:
            poller.close()  # wakes a wait() blocked between polls
        with self._lock:
            if self._ino is not None:
                self._ino.close()
                self._ino = None
            if self._poller is not None:
                self._poller.close()
            os.close(self._wake_r)
            os.close(self._wake_w)


#: Paths at least this long (bytes) are out of reach of path-based calls (PATH_MAX 4096).
LONG_PATH = 4000


@contextlib.contextmanager
def _dir_path(root: str, rel: RelPath) -> Iterator[str]:
    """A path naming directory ``rel`` for inotify_add_watch and scandir. Beyond PATH_MAX
    (a tree nested deep enough) the directory is opened component by component from the
    root (as the replica does) and named ``/proc/self/fd/N/.``: the kernel follows the fd
    link, and the final ``.`` is a directory, so IN_DONT_FOLLOW does not stop it."""
    path = os.path.join(root, rel) if rel else root
    if len(os.fsencode(path)) < LONG_PATH:
        yield path
        return
    root_fd = fsops.open_root(root)
    try:
        parent_fd, name = fsops.walk_parent(root_fd, rel, create=False)
    finally:
        os.close(root_fd)
    try:
        fd = fsops.open_dir_at(parent_fd, name)
    finally:
        os.close(parent_fd)
    try:
        yield f"/proc/self/fd/{fd}/."
    finally:
        os.close(fd)


def make_watcher(
    root: str, prune: Prune = _no_prune, temp_prefix: str = DEFAULT_TEMP_PREFIX
) -> Union[Watcher, PollingWatcher]:
    """The best watcher here: inotify, or polling where inotify is unavailable (or when
    ``PODSYNC_FORCE_POLLING=1``). Call ``start()`` on it, then ``wait()`` in a loop."""
    if inotify_available():
        return Watcher(root, prune, temp_prefix)
    return PollingWatcher(root, prune, temp_prefix)

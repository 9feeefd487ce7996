"""Linux inotify through ctypes: the three libc calls and the event record format.

Owns: loading ``inotify_init1``/``inotify_add_watch``/``inotify_rm_watch``, the event mask
constants and :func:`parse_events` (pure: bytes in, records out, so it can be tested with
crafted buffers). May import: the standard library only. Ships inside the container agent.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import List, NamedTuple, Optional

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

#: What a sync watcher needs: content, metadata (exec bit, mtime), names, and its own dir.
WATCH_MASK = (
    IN_CREATE
    | IN_DELETE
    | IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_ATTRIB
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
)

_HEADER = struct.Struct("iIII")
#: Large enough for many events; the kernel never splits one across reads.
READ_SIZE = 64 * 1024


class Event(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: bytes


def parse_events(buf: bytes) -> List[Event]:
    """Split a read() of an inotify fd into events (name without its NUL padding)."""
    events: List[Event] = []
    size = _HEADER.size
    offset = 0
    end = len(buf)
    while offset + size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(buf, offset)
        raw = buf[offset + size : offset + size + length]
        nul = raw.find(b"\0")
        events.append(Event(wd, mask, cookie, raw if nul < 0 else raw[:nul]))
        offset += size + length
    return events


class Inotify:
    """A non-blocking inotify instance. Raises OSError when the kernel refuses one."""

    def __init__(self) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("inotify is not available (no libc inotify functions)")
        self._libc = libc
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd: int = fd

    def add_watch(self, path: str, mask: int = WATCH_MASK) -> int:
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def rm_watch(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)  # failure: the watch is already gone

    def read(self) -> List[Event]:
        """All events available now ([] when none)."""
        events: List[Event] = []
        while True:
            try:
                buf = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return events
            if not buf:
                return events
            events.extend(parse_events(buf))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_LIBC: Optional[ctypes.CDLL] = None
_LIBC_TRIED = False


def _libc() -> Optional[ctypes.CDLL]:
    """libc with inotify symbols, or None (non-Linux, or a libc without them)."""
    global _LIBC, _LIBC_TRIED
    if _LIBC_TRIED:
        return _LIBC
    _LIBC_TRIED = True
    for name in (None, "libc.so.6", "libc.so"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_init1.restype = ctypes.c_int
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            lib.inotify_add_watch.restype = ctypes.c_int
            lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.inotify_rm_watch.restype = ctypes.c_int
        except (OSError, AttributeError):
            continue
        _LIBC = lib
        return lib
    return None


def available() -> bool:
    return _libc() is not None

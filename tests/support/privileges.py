"""Running test code where permission bits apply, although the suite runs as root.

Owns: :func:`without_root_override`. May import: the standard library only.

Root ignores permission bits through three capabilities: CAP_DAC_OVERRIDE (read/write/search
anything), CAP_DAC_READ_SEARCH (read/search anything) and CAP_FOWNER (act on files it does
not own: chmod, the sticky bit). The helper forks, and the child drops those three from its
bounding, permitted and effective sets (``prctl(PR_CAPBSET_DROP)`` and ``capset`` through
ctypes) before it runs the code: the child stays uid 0 (so it can still read the interpreter
and the checkout, which root owns) but gets EACCES from a mode-000 directory and EPERM from a
sticky directory like any user, and so do the processes it starts (the bounding set is
inherited across exec). No FUSE, no second user account, no change to the files' owners.
"""

from __future__ import annotations

import ctypes
import os
import pickle
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_FOWNER = 3
_DROPPED = (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER)
_PR_CAPBSET_DROP = 24
_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def drop_root_override() -> None:
    """Drop CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from this process for good."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DROPPED:
        _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    _check(libc.capget(ctypes.byref(header), data), "capget")
    mask = 0xFFFFFFFF & ~sum(1 << cap for cap in _DROPPED)  # all three live in word 0
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    _check(libc.capset(ctypes.byref(header), data), "capset")


def without_root_override(fn: Callable[[], T]) -> T:
    """Run ``fn`` with permission bits enforced and return its result (or raise its error).

    Under root: in a forked child that dropped root's override capabilities (the result or
    exception comes back pickled through a pipe). Otherwise in-process: the bits apply.
    """
    if os.geteuid() != 0:
        return fn()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_fd)
            drop_root_override()
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the parent
                payload = pickle.dumps((False, exc))
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        except BaseException:  # noqa: BLE001 - the parent reports the failed child
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise AssertionError(f"the child without root's override failed (wait status {status})")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]

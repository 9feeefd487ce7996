"""Helpers for the replica tests: deadline waits, hint collection, whole-tree fingerprints,
running code without root's permission override.

Owns: nothing shipped. May import: the standard library and ``podsync.replica``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from podsync.core.paths import RelPath

T = TypeVar("T")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until truthy; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.005)


class HintSource(Protocol):
    def wait(self, timeout: float) -> list[RelPath]: ...


def collect_hints(
    watcher: HintSource, until: Callable[[set[str]], bool], timeout: float = 10.0
) -> set[str]:
    """Gather hints from ``watcher`` until ``until(hints)`` holds; AssertionError otherwise."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not until(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"hints so far {sorted(seen)} never satisfied the condition")
        seen.update(watcher.wait(min(left, 0.2)))
    return seen


def fingerprint(top: str) -> dict[str, tuple[object, ...]]:
    """Everything observable below ``top`` (kinds, modes, mtimes, contents, link targets)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, top)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode)
            else:
                with open(full, "rb") as f:
                    out[rel] = ("file", st.st_mode, st.st_mtime_ns, f.read())
    return out


def leftovers(top: str, prefix: str = ".podsync-tmp-") -> list[str]:
    """Temp files anywhere below ``top``."""
    return [
        os.path.join(d, n)
        for d, dirs, files in os.walk(top)
        for n in dirs + files
        if n.startswith(prefix)
    ]


NOBODY = 65534


def as_unprivileged(fn: Callable[[], T]) -> T:
    """Run ``fn`` where permission bits are enforced and return its result.

    Root ignores permission bits (CAP_DAC_OVERRIDE), so under root ``fn`` runs in a forked
    child that has switched to uid/gid 65534 (nobody) with ``os.setgid``/``os.setuid``; the
    result (or the exception) comes back pickled through a pipe. The child is a fork of the
    test process, so it needs no interpreter or module files it cannot read. Non-root: ``fn``
    runs in-process (the bits already apply). The files ``fn`` touches must be reachable by
    uid 65534: make them with :func:`unprivileged_dir`.
    """
    if os.geteuid() != 0:
        return fn()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - sent to the parent, re-raised there
                payload = pickle.dumps((False, exc))
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        except BaseException:  # noqa: BLE001
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise AssertionError(f"the unprivileged child failed (wait status {status})")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def unprivileged_dir() -> Path:
    """A fresh directory under /tmp owned by uid 65534 (when we are root), so that
    :func:`as_unprivileged` can reach it (pytest's tmp_path lies below a 0700 folder of
    root's). The caller removes it (:func:`remove_tree`)."""
    top = Path(tempfile.mkdtemp(prefix="podsync-perm-", dir="/tmp"))
    top.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(top, NOBODY, NOBODY)
    return top


def give_away(top: Path) -> None:
    """chown everything below ``top`` to uid 65534 (no-op when not root)."""
    if os.geteuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY, follow_symlinks=False)


def remove_tree(top: Path) -> None:
    """Restore permissions everywhere below ``top`` and remove it (top-down: each directory
    is made listable before os.walk lists it)."""
    os.chmod(top, 0o755)
    for dirpath, dirnames, _ in os.walk(top):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    shutil.rmtree(top)

"""Helpers for the replica tests: deadline waits, hint collection, whole-tree fingerprints.

Owns: nothing shipped. May import: the standard library and ``podsync.replica``.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from typing import Protocol

from podsync.core.paths import RelPath


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

"""Streaming one file into place atomically.

Owns: :class:`FileWriter` (temp file in the target's directory, mode and mtime set on the
temp, expectation checked just before the rename). May import: the standard library,
``podsync.core``, ``replica.fsops``. Ships inside the container agent.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Optional, Union

from podsync.core.entry import Entry, Expect, Problem
from podsync.core.paths import RelPath
from podsync.replica import fsops

if TYPE_CHECKING:
    from types import TracebackType

    from podsync.replica.replica import Replica


def file_mode(executable: bool, existing: Optional[int]) -> int:
    """Permission bits for a written file: the replaced file's bits (0o644 for a new file),
    with execute bits added where read bits are (like git's 0o755) or removed."""
    base = 0o644 if existing is None else existing & 0o777
    if executable:
        return base | ((base & 0o444) >> 2)
    return base & ~0o111


class FileWriter:
    """Returned by ``Replica.begin_write``: ``write`` chunks, then ``commit`` or ``abort``.

    Never raises for per-path trouble: a writer that could not start (or whose write
    failed) swallows further chunks and ``commit`` returns the Problem. Usable as a context
    manager that aborts unless committed. The temp file never survives commit or abort.
    """

    def __init__(
        self,
        replica: Replica,
        path: RelPath,
        entry: Entry,
        expect: Expect,
        problem: Optional[str] = None,
        dir_fd: int = -1,
        temp: str = "",
        fd: int = -1,
        mode: int = 0o644,
    ) -> None:
        self.path = path
        self.entry = entry
        self._replica = replica
        self._expect = expect
        self._problem = problem
        self._dir_fd = dir_fd
        self._temp = temp
        self._fd = fd
        self._mode = mode
        self._written = 0
        self._done = False

    @property
    def bytes_written(self) -> int:
        return self._written

    def write(self, chunk: bytes) -> None:
        if self._done or self._problem is not None:
            return
        try:
            fsops.write_all(self._fd, chunk)
        except OSError as exc:
            self._fail(f"could not write: {exc.strerror}")
            return
        self._written += len(chunk)

    def commit(self) -> Union[Entry, Problem]:
        """Put the file in place if the target still matches the expectation."""
        if self._done:
            return Problem(self.path, "write already finished")
        if self._problem is not None:
            self._done = True
            return Problem(self.path, self._problem)
        if self._written != self.entry.size:
            self._fail("the source changed during the transfer; left as is")
            self._done = True
            return Problem(self.path, self._problem or "")
        try:
            os.fchmod(self._fd, self._mode)
            mtime = self.entry.mtime_ns
            os.utime(self._fd, ns=(mtime, mtime))
            if self._replica.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            result = self._replica._install(self._dir_fd, self._temp, self.path, self._expect)
            if isinstance(result, Entry):
                self._temp = ""  # renamed into place: nothing left to remove
        except OSError as exc:
            result = Problem(self.path, f"could not write: {exc.strerror}")
        except fsops.Refused as exc:
            result = Problem(self.path, str(exc))
        self._cleanup()
        self._done = True
        return result

    def abort(self) -> None:
        """Drop the temp file; the target is left exactly as it was."""
        if not self._done:
            self._cleanup()
            self._done = True

    def _fail(self, message: str) -> None:
        self._problem = message
        self._cleanup()

    def _cleanup(self) -> None:
        if self._fd != -1:
            os.close(self._fd)
            self._fd = -1
        if self._temp and self._dir_fd != -1:
            with contextlib.suppress(OSError):
                os.unlink(self._temp, dir_fd=self._dir_fd)
            self._temp = ""
        if self._dir_fd != -1:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.abort()

    def __del__(self) -> None:
        # Last resort for a writer dropped without commit/abort: no temp, no fd leak.
        if not getattr(self, "_done", True):
            self.abort()

"""One folder on one side: scan, read, atomic writes, watch.

Owns: the ``replica`` package's public names. Ships inside the container agent (stdlib only,
Python 3.9). See ``replica.replica`` for the security model (dir fds, never following a
symlink out of the root).
"""

from __future__ import annotations

from podsync.replica.replica import CHANGED, Replica
from podsync.replica.writer import FileWriter

__all__ = ["CHANGED", "FileWriter", "Replica"]

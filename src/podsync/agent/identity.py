"""The container filesystem's identity, as the agent reports it in its hello.

Owns: :func:`filesystem_id`. May import: the standard library. Ships inside the container.

The engine keeps state per container filesystem (what was last agreed with it). It must know
when it meets the same one again (a reconnect, ``docker restart``) and when the filesystem is
new (a new pod, a recreated container) even if the path is the same.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional

#: Where the identity is kept: outside any synced folder, in the container's own /tmp (it
#: survives a restart of the container, not its recreation).
FSID_DIR = "/tmp/.podsync/ids"


def filesystem_id(root: str, base: str = FSID_DIR) -> Optional[str]:
    """``<hostname>/<random id>``: the same for every connection to this root in this
    container (also across ``docker restart``: /tmp and the hostname survive it), new in a new
    pod or a recreated container. None when it cannot be kept (never an error)."""
    try:
        key = hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()
        os.makedirs(base, mode=0o700, exist_ok=True)
        path = os.path.join(base, key)
        try:
            with open(path, encoding="ascii") as handle:
                ident = handle.read(100).strip()
        except FileNotFoundError:
            temp = f"{path}.{os.getpid()}.tmp"
            with open(temp, "w", encoding="ascii") as handle:
                handle.write(os.urandom(16).hex() + "\n")
            try:
                os.link(temp, path)  # the first of two racing agents wins
            except FileExistsError:
                pass
            finally:
                os.unlink(temp)
            with open(path, encoding="ascii") as handle:
                ident = handle.read(100).strip()
        if len(ident) != 32 or ident.strip("0123456789abcdef"):
            return None
        return f"{os.uname().nodename}/{ident}"
    except (OSError, UnicodeError, ValueError):
        return None

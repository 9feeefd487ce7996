"""The container filesystem's identity, as the agent reports it in its hello.

Owns: :func:`filesystem_id`. May import: the standard library. Ships inside the container.

The engine keeps state per container filesystem (what was last agreed with it). It must know
when it meets the same one again (a reconnect, ``docker restart``) and when the filesystem is
new (a new pod, a recreated container) even if the path is the same.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Optional

#: Where the identity is kept: outside any synced folder, in the container's own /tmp (it
#: survives a restart of the container, not its recreation).
FSID_DIR = "/tmp/.podsync/ids"


def filesystem_id(root: str, base: str = FSID_DIR) -> Optional[str]:
    """``<hostname>/<random id>/<inode of the root>``: the same for every connection to this
    root in this container (also across ``docker restart``: /tmp, the hostname and the root's
    inode survive it), new in a new pod or a recreated container, and new when the root folder
    itself was recreated (say /tmp is a volume that outlives the container's filesystem). The
    device number is not part of it: an overlay root gets another one at every start of the
    container. None when it cannot be kept (never an error).

    ``base`` may be shared with other users on an ssh host: it must be a directory of ours
    (not a symlink), and files are created without following links."""
    try:
        real = os.path.realpath(root)
        st = os.stat(real)
        key = hashlib.sha256(os.fsencode(real)).hexdigest()
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return None
        path = os.path.join(base, key)
        ident = _read(path)
        if ident is None:
            temp = f"{path}.{os.getpid()}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
            try:
                os.write(fd, (os.urandom(16).hex() + "\n").encode("ascii"))
            finally:
                os.close(fd)
            try:
                os.link(temp, path)  # the first of two racing agents wins
            except FileExistsError:
                pass
            finally:
                os.unlink(temp)
            ident = _read(path)
        if ident is None or len(ident) != 32 or ident.strip("0123456789abcdef"):
            return None
        return f"{os.uname().nodename}/{ident}/{st.st_ino}"
    except (OSError, UnicodeError, ValueError):
        return None


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _read(path: str) -> Optional[str]:
    """The id kept at ``path`` (not through a symlink), None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 100).decode("ascii").strip()
    finally:
        os.close(fd)

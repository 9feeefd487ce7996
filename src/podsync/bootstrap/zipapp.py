"""Build the agent zipapp from the installed podsync package.

Owns: which modules ship into the container and the content hash naming the bundle.
May import: the standard library.

The bundle holds only the shipped packages (standard library only, Python >= 3.9) and is
built deterministically (sorted names, fixed timestamps) so the same code always has the
same hash: the hash is in the file name, and the agent is installed only when that exact
version is absent in the container.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from pathlib import Path

import podsync

SHIPPED = ("errors.py", "limits.py", "core", "wire", "replica", "agent")

_MAIN = b"import sys\nfrom podsync.agent.server import main\nsys.exit(main())\n"
_INIT = b'"""podsync agent bundle (standard library only)."""\n'


def _sources() -> list[tuple[str, bytes]]:
    base = Path(podsync.__file__).parent
    files: list[tuple[str, bytes]] = [("__main__.py", _MAIN), ("podsync/__init__.py", _INIT)]
    for name in SHIPPED:
        path = base / name
        if path.is_file():
            files.append((f"podsync/{name}", path.read_bytes()))
            continue
        for source in sorted(path.rglob("*.py")):
            rel = source.relative_to(base).as_posix()
            files.append((f"podsync/{rel}", source.read_bytes()))
    return sorted(files)


@functools.lru_cache(maxsize=1)
def agent_bundle() -> tuple[bytes, str]:
    """The zipapp bytes and their short content hash."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _sources():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    payload = buffer.getvalue()
    return payload, hashlib.sha256(payload).hexdigest()[:16]

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

# Python never caches bytecode for modules imported from a zip, so every start of the agent
# used to compile all shipped modules (~50 ms of the agent's ~60 ms start in the test
# container). The first start unpacks the bundle next to itself (atomically: a temp dir
# renamed into place) and imports from there, where ``__pycache__`` persists; when that is
# impossible (read-only /tmp), the zip is used as before. The directory is named after the
# bundle, whose name carries its content hash, so it never serves another version.
_MAIN = b"""import os, sys
def _unpacked(bundle):
    target = bundle[:-4] + ".d" if bundle.endswith(".pyz") else ""
    if not target or os.path.isdir(target):
        return target
    import zipfile
    temp = "%s.%d.tmp" % (target, os.getpid())
    try:
        with zipfile.ZipFile(bundle) as archive:
            archive.extractall(temp)
        os.rename(temp, target)
    except OSError:
        import shutil
        shutil.rmtree(temp, ignore_errors=True)
    return target if os.path.isdir(target) else ""
_here = _unpacked(os.path.abspath(sys.argv[0]))
if _here and os.path.isfile(os.path.join(_here, "podsync", "agent", "server.py")):
    sys.path.insert(0, _here)
from podsync.agent.server import main
sys.exit(main())
"""
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

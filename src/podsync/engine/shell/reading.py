"""Reading from the container through the shell: tar downloads and sha256 digests.

Owns: :func:`read_files` (one ``tar -c --no-recursion`` stream, validated member by member,
constant memory, after one ``stat`` record per path for the nanoseconds of its mtime) and the
digest script and its parser. May import: the standard library,
``podsync.core``, ``podsync.errors``, ``podsync.limits``, ``podsync.transport.base``,
``engine.shell.scripts``, ``engine.shell.tarstream``.

The archive is UNTRUSTED: every member name goes through ``relpath`` and must be the next
(or a later) path we asked for, in order, exactly once; hard links, devices and anything
else are refused, so a hostile ``tar`` can at worst withhold files, never place one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from podsync.core.entry import DIR, FILE, LINK, Entry, Problem
from podsync.core.paths import RelPath, symlink_stays_inside
from podsync.engine.shell import scripts
from podsync.engine.shell.listing import parse_records
from podsync.engine.shell.tarstream import ByteReader, Member, Receive, StreamEnded, TarReader
from podsync.errors import PodsyncError, ProtocolError, SafetyHalt, TransportError, UnsafePath
from podsync.limits import CHUNK_BYTES

if TYPE_CHECKING:
    from podsync.engine.shell.endpoint import ShellEndpoint

_HEX = frozenset(b"0123456789abcdef")


class ShellSourceFile:
    """One downloaded path; a file's content must be consumed before the next is requested."""

    def __init__(self, path: RelPath, entry: Entry, tar: TarReader | None, owner: ShellEndpoint):
        self.path = path
        self.entry = entry
        self._tar = tar
        self._owner = owner
        #: tar cannot tell whether a file changed while it was read.
        self.changed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._tar is None:
            return
        throttle = self._owner.download_throttle
        said = self._owner.stderr_tail  # (a new list once the container says something)
        try:
            async for data in self._tar.content(throttle.chunk_size(CHUNK_BYTES)):
                await throttle.take(len(data))
                yield data
        except StreamEnded as exc:  # name what was being read, not the stream
            tail = self._owner.stderr_tail
            if tail is not said:
                raise TransportError(f"the download of {self.path} stopped: {tail[-1]}") from exc
            raise TransportError(
                f"the container stopped (killed?) during the download of {self.path}"
            ) from exc


#: Most bytes of one stat record a download waits for (a name is at most PATH_MAX).
_RECORD_BYTES = 64 * 1024

#: Mtimes (size, ns) by the name stat printed (``./path``), from before a download's archive.
Mtimes = dict[bytes, tuple[int, int]]


def read_script(root: str, paths: Sequence[RelPath]) -> str:
    """The stat record of each of ``paths`` (a tar header has whole seconds only), ``=OK``,
    then one tar stream per argv-sized run of ``paths`` (concatenated archives)."""
    lines = [scripts.cd_root(root).rstrip()]
    for run in scripts.chunked([scripts.q(scripts.dot(p)) for p in paths]):
        lines.append(f"stat -c {scripts.q(scripts.STAT_FORMAT)} -- {' '.join(run)} 2>/dev/null")
    lines.append("echo =OK")
    for run in scripts.chunked([scripts.q(p) for p in paths]):
        lines.append(f"tar -c -f - --no-recursion -- {' '.join(run)}")
    return "\n".join(lines) + "\n"


def member_entry(member: Member, mtimes: Mtimes | None = None) -> Entry | str | None:
    """The Entry a member stands for; a string for a refused member; None to skip it. A
    file's mtime has the nanoseconds stat printed for it when the size and second agree (it
    did not change in between; if it did, the next listing shows it changed)."""
    if member.kind == FILE:
        mtime = member.mtime * 10**9
        seen = (mtimes or {}).get(b"./" + member.path.encode("utf-8", "surrogateescape"))
        # (busybox tar writes 0 for a negative mtime)
        if seen is not None and seen[0] == member.size:
            second = seen[1] // 10**9
            if member.mtime == second or (second < 0 and member.mtime == 0):
                mtime = seen[1]
        return Entry(FILE, member.size, mtime, bool(member.mode & 0o100))
    if member.kind == DIR:
        return Entry(DIR)
    if member.kind == LINK:
        if not symlink_stays_inside(member.path, member.linkname):
            return f"symlink target '{member.linkname}' leaves the sync folder"
        return Entry(LINK, target=member.linkname)
    if member.kind == "hardlink":
        return None  # same inode as an earlier path: fetched on its own afterwards
    return "not a file, folder or symlink"


async def read_files(
    owner: ShellEndpoint, paths: Sequence[RelPath]
) -> AsyncIterator[ShellSourceFile]:
    """Stream ``paths`` in order (vanished ones skipped); see the module docstring."""
    again: list[RelPath] = []
    async for source in _read_once(owner, paths, again):
        yield source
    for path in again:  # hard links to a path sent earlier in the same archive
        async for source in _read_once(owner, [path], []):
            yield source


async def _read_once(
    owner: ShellEndpoint, paths: Sequence[RelPath], again: list[RelPath]
) -> AsyncIterator[ShellSourceFile]:
    if not paths:
        return
    argv, stdin = scripts.piped_script(read_script(owner.root, paths))
    channel = await owner.transport.spawn(argv, owner._stderr)
    try:
        await channel.write(stdin)
        mtimes, rest = await _mtimes(channel.read, len(paths))
        if rest.startswith(b"=NOR"):
            raise SafetyHalt(f"the container folder {owner.root} is gone; sync stopped")
        if not rest.startswith(b"=OK\n"):
            raise ProtocolError(f"the container's shell answered {rest[:4]!r} to a download")
        tar = TarReader(ByteReader(channel.read, rest[4:]))
        order = {p: i for i, p in enumerate(paths)}
        at = 0
        while True:
            member = await tar.next()
            if member is None:
                break
            index = order.get(member.path)
            if index is None or index < at:
                raise UnsafePath(
                    f"the container's tar sent {member.path!r}, which was not asked for"
                    " (or twice); download refused"
                )
            at = index + 1
            entry = member_entry(member, mtimes)
            if entry is None:
                again.append(member.path)
            elif isinstance(entry, str):
                owner.read_problems.append(Problem(member.path, f"not downloaded: {entry}"))
            else:
                yield ShellSourceFile(
                    member.path, entry, tar if entry.kind == FILE else None, owner
                )
        code = await channel.wait()
        if code not in (0, 1):  # tar exits 1 (GNU) for a path that vanished meanwhile
            detail = " ".join(owner.stderr_tail[-2:]) or f"exit code {code}"
            raise ProtocolError(f"download from the container failed: {detail}")
    finally:
        with contextlib.suppress(PodsyncError, OSError):
            await channel.kill()


async def _mtimes(read: Receive, count: int) -> tuple[Mtimes, bytes]:
    """The stat records before a download's archive (at most ``count``, each at most
    _RECORD_BYTES: the input is untrusted), and the bytes from the marker line after them on
    (at least 4)."""
    out: Mtimes = {}
    buf = bytearray()
    seen = 0
    while True:
        records, pos, marker = parse_records(buf, 0, links=False, final=False)
        seen += len(records)
        if seen > count:
            raise ProtocolError("the container's shell listed more paths than a download asked")
        for record in records:
            out[record.name] = (record.size, record.mtime_ns)
        del buf[:pos]
        if marker and len(buf) >= 4:
            return out, bytes(buf)
        if len(buf) > _RECORD_BYTES:
            raise ProtocolError("the container's shell sent an endless record to a download")
        data = await read(1 << 16)
        if not data:
            raise StreamEnded("the container's output ended before the download's archive")
        buf += data


def digest_script(root: str, paths: Sequence[RelPath]) -> str:
    """sha256sum of the regular files among ``paths`` (symlinks and dirs skipped by find)."""
    lines = [scripts.cd_root(root).rstrip()]
    for run in scripts.chunked([scripts.q(scripts.dot(p)) for p in paths]):
        lines.append(f"find {' '.join(run)} -prune -type f -print0 | xargs -0 -r sha256sum")
    return "\n".join(lines) + "\n"


def _escaped(name: bytes) -> bytes:
    """How GNU sha256sum prints a name containing a backslash or newline (after a ``\\``)."""
    return name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def parse_digests(out: bytes, paths: Sequence[RelPath]) -> dict[RelPath, str | None]:
    """Match ``HEX  ./path`` lines to ``paths`` in order; unmatched paths get None."""
    result: dict[RelPath, str | None] = {p: None for p in paths}
    pos = 0
    for path in paths:
        name = b"./" + path.encode("utf-8", "surrogateescape")
        for lead, shown in ((b"", name), (b"\\", _escaped(name))):
            start = pos + len(lead)
            if out[pos : pos + len(lead)] != lead:
                continue
            digest = out[start : start + 64]
            tail = b"  " + shown + b"\n"
            if len(digest) == 64 and set(digest) <= _HEX and out.startswith(tail, start + 64):
                result[path] = digest.decode("ascii")
                pos = start + 64 + len(tail)
                break
    return result

"""tar streams to and from the container, with constant memory.

Owns: :class:`TarWriter` (builds an upload archive from async chunks, header by header, so
no file is ever held whole) and :class:`TarReader` (parses a download archive incrementally
from a byte pipe, refusing anything but plain files, directories and symlinks with safe
names). May import: the standard library, ``podsync.core``, ``podsync.errors``.

Headers are written in GNU format (what busybox tar reads best: long names through
``././@LongLink``) and parsed with :meth:`tarfile.TarInfo.frombuf`; GNU long names and pax
``path``/``linkpath``/``size`` records are understood on the way in.
"""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from podsync.core.paths import RelPath, relpath
from podsync.errors import ProtocolError

BLOCK = 512
#: GNU tar pads archives to 20 blocks; a reader that wants a whole record gets one.
RECORD = 20 * BLOCK
#: Long-name and pax members carry metadata only; more than this is hostile.
MAX_META_BYTES = 1 << 20
#: Outgoing bytes are gathered up to this size before a write (many small files).
SEND_BUFFER = 256 * 1024

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[int], Awaitable[bytes]]


def _pad(n: int) -> int:
    return -n % BLOCK


class StreamEnded(ProtocolError):
    """The container's stream stopped before its end (the far process or container died)."""


class TarWriter:
    """Writes an archive to ``send``; every member is a regular file."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._buf = bytearray()
        self.total = 0

    async def _put(self, data: bytes) -> None:
        self._buf += data
        self.total += len(data)
        if len(self._buf) >= SEND_BUFFER:
            await self.flush()

    async def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            await self._send(data)

    def _header(self, name: str, size: int, mtime: int, mode: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = mtime
        info.mode = mode
        info.type = tarfile.REGTYPE
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")

    async def add_file(
        self, name: str, size: int, mtime: int, mode: int, chunks: AsyncIterator[bytes]
    ) -> bool:
        """Stream one file of announced ``size``; False when the content did not have that
        size (it is cut or zero-padded to keep the archive valid; the caller discards it)."""
        await self._put(self._header(name, size, mtime, mode))
        left = size
        exact = True
        async for data in chunks:
            if len(data) > left:
                exact = False
                data = data[:left]
            left -= len(data)
            if len(data) >= SEND_BUFFER:
                await self.flush()
                self.total += len(data)
                await self._send(data)
            elif data:
                await self._put(data)
        if left:
            exact = False
            while left:
                n = min(left, SEND_BUFFER)
                await self._put(bytes(n))
                left -= n
        await self._put(bytes(_pad(size)))
        return exact

    async def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> None:
        await self._put(self._header(name, len(data), 0, mode))
        await self._put(data + bytes(_pad(len(data))))

    async def close(self) -> None:
        """End-of-archive marker, padded to a whole record."""
        end = bytes(2 * BLOCK)
        await self._put(end + bytes(-(self.total + len(end)) % RECORD))
        await self.flush()


class ByteReader:
    """Buffered exact reads over a ``read(n)`` pipe."""

    def __init__(self, receive: Receive, first: bytes = b"") -> None:
        self._receive = receive
        self._buf = bytearray(first)
        self._eof = False

    async def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._eof:
            data = await self._receive(max(n - len(self._buf), 1 << 16))
            if not data:
                self._eof = True
            self._buf += data

    async def read_upto(self, n: int) -> bytes:
        """Between 1 and ``n`` bytes; b"" only at end of stream."""
        if not self._buf and not self._eof:
            data = await self._receive(max(n, 1 << 16))
            if not data:
                self._eof = True
            self._buf += data
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read_exact(self, n: int, what: str) -> bytes:
        await self._fill(n)
        if len(self._buf) < n:
            raise StreamEnded(f"the container's tar stream ended inside {what}")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def at_eof(self) -> bool:
        await self._fill(1)
        return not self._buf

    async def skip(self, n: int, what: str) -> None:
        while n:
            data = await self.read_upto(min(n, 1 << 20))
            if not data:
                raise StreamEnded(f"the container's tar stream ended inside {what}")
            n -= len(data)


@dataclass(frozen=True)
class Member:
    """One archive member: ``kind`` is "file", "dir", "link", "hardlink" or "other"."""

    path: RelPath
    kind: str
    size: int
    mtime: int
    mode: int
    linkname: str


_KIND = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "link",
    tarfile.LNKTYPE: "hardlink",
}


_NO_DATA = frozenset(
    {tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE}
    | {tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE}
)


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "surrogateescape")


def member_path(name: str) -> RelPath:
    """A member name as a RelPath; anything that could leave the root raises UnsafePath."""
    if name.startswith("./"):
        name = name[2:]
    if name.endswith("/"):
        name = name[:-1]
    if name in ("", "."):
        return relpath("")
    return relpath(name)


def _pax(data: bytes) -> dict[str, str]:
    """Records ``LEN key=value\\n`` of a pax header."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise ProtocolError("the container's tar stream has a malformed pax header")
        length = int(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ProtocolError("the container's tar stream has a malformed pax header")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class TarReader:
    """Members of an archive (or of several concatenated ones) read from ``source``."""

    def __init__(self, source: ByteReader) -> None:
        self._src = source
        self._left = 0  # content bytes of the current member not consumed yet
        self._pad = 0

    async def _meta(self, info: tarfile.TarInfo) -> bytes:
        if info.size > MAX_META_BYTES:
            raise ProtocolError("the container's tar stream has an oversized header member")
        data = await self._src.read_exact(info.size + _pad(info.size), "a header")
        return data[: info.size]

    async def next(self) -> Member | None:
        """The next member (its content is then read with :meth:`content`), None at the end."""
        await self._src.skip(self._left + self._pad, "a member")
        self._left = self._pad = 0
        long_name: str | None = None
        long_link: str | None = None
        pax: dict[str, str] = {}
        while True:
            if await self._src.at_eof():
                if long_name is not None or pax:
                    raise ProtocolError("the container's tar stream ended after a header")
                return None
            block = await self._src.read_exact(BLOCK, "a header")
            if block == bytes(BLOCK):
                continue  # end-of-archive marker (or padding): another archive may follow
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise ProtocolError(f"the container sent a corrupt tar header ({exc})") from None
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = (
                    (await self._meta(info)).rstrip(b"\0").decode("utf-8", "surrogateescape")
                )
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                long_link = (
                    (await self._meta(info)).rstrip(b"\0").decode("utf-8", "surrogateescape")
                )
            elif info.type == tarfile.XHDTYPE:
                pax.update(_pax(await self._meta(info)))
            elif info.type == tarfile.XGLTYPE:
                await self._meta(info)
            else:
                return self._member(
                    info, pax.get("path", long_name), pax.get("linkpath", long_link), pax
                )

    def _member(
        self, info: tarfile.TarInfo, name: str | None, link: str | None, pax: dict[str, str]
    ) -> Member:
        size = info.size
        if "size" in pax:
            if not pax["size"].isdigit():
                raise ProtocolError("the container's tar stream has a malformed pax size")
            size = int(pax["size"])
        kind = _KIND.get(info.type, "other")
        has_data = kind == "file" or info.type not in (
            tarfile.SYMTYPE,
            tarfile.LNKTYPE,
            tarfile.DIRTYPE,
            tarfile.CHRTYPE,
            tarfile.BLKTYPE,
            tarfile.FIFOTYPE,
        )
        self._left = size if has_data else 0
        self._pad = _pad(self._left)
        path = member_path(name if name is not None else info.name)
        return Member(
            path,
            kind,
            size,
            int(info.mtime),
            info.mode,
            link if link is not None else info.linkname,
        )

    async def content(self, chunk: int) -> AsyncIterator[bytes]:
        """The current member's content in pieces of at most ``chunk`` bytes."""
        while self._left:
            data = await self._src.read_upto(min(self._left, chunk))
            if not data:
                raise StreamEnded("the container's tar stream ended inside a file")
            self._left -= len(data)
            yield data
        await self._src.skip(self._pad, "padding")
        self._pad = 0

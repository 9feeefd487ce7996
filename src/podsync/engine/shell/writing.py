"""Writing into the container through the shell: staged tar uploads and their move script.

Owns: :func:`write_files` (batches of one ``tar -x`` into a staging dir inside the root, then
a generated script checking each expectation and moving files into place: a rename per file,
readers never see a partial one) and the extract script. May import: the standard library,
``podsync.core``, ``podsync.errors``, ``podsync.transport.base``, ``podsync.replica.writer``
(the permission rule), ``podsync.engine.endpoint``, ``engine.shell.*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from podsync.core.entry import DIR, FILE, LINK, Entry, Problem
from podsync.core.paths import RelPath, basename, parent
from podsync.engine.endpoint import FileItem, WriteResult
from podsync.engine.shell import changes, scripts
from podsync.engine.shell.listing import Record, parse_records, record_path
from podsync.engine.shell.tarstream import Receive, Send, TarWriter
from podsync.errors import PeerStalled, PodsyncError, SafetyHalt, TransportError
from podsync.replica.writer import file_mode
from podsync.transport.base import Channel

if TYPE_CHECKING:
    from podsync.engine.shell.endpoint import ShellEndpoint

#: Files written per exec (see write_files).
WRITE_BATCH_FILES = 10_000


async def write_files(owner: ShellEndpoint, items: AsyncIterator[FileItem]) -> WriteResult:
    """One exec per WRITE_BATCH_FILES items (none when there is nothing to send): a
    batch's move script and answers grow with its paths, so a 120k-file upload in one
    exec peaked at ~400 MB locally (issue 8)."""
    iterator = items.__aiter__()
    result = WriteResult({}, [])
    while True:
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            return result
        part = await _write_batch(owner, first, iterator)
        result.written.update(part.written)
        result.problems.extend(part.problems)


async def _write_batch(
    owner: ShellEndpoint, first: FileItem, rest: AsyncIterator[FileItem]
) -> WriteResult:
    """One tar stream of ``first`` and at most WRITE_BATCH_FILES - 1 more of ``rest`` into
    a fresh staging dir, then the generated move script."""

    async def every() -> AsyncIterator[FileItem]:
        yield first
        for _ in range(WRITE_BATCH_FILES - 1):
            try:
                item = await rest.__anext__()
            except StopAsyncIteration:
                return
            yield item

    caps = await owner._capabilities()
    stage = scripts.STAGE_PREFIX + secrets.token_hex(6)
    framed = caps.exact_reads
    channel = await owner.transport.spawn(
        ["sh", "-c", EXTRACT, "sh", owner.root, stage, "framed" if framed else "eof"],
        owner._stderr,
    )
    reader = asyncio.create_task(_read_all(channel.read))
    uploads: list[changes.Upload] = []
    groups: dict[RelPath, int] = {}
    said, item = owner.stderr_tail, None  # (a new list once the container says something)
    try:
        writer = TarWriter(_send_up(owner, channel.write, framed))
        async for item in every():
            staged = None
            if item.entry.kind == FILE:
                group = groups.setdefault(parent(item.path), len(groups))
                staged = f"{group}/{basename(item.path)}"
                ok = await _stage(owner, writer, staged, item)
                staged = staged if ok else None
            uploads.append(changes.Upload(len(uploads), item.path, item.entry, item.expect, staged))
        paths = [u.path for u in uploads]
        script = (
            changes.write_script(uploads, caps.mtime_digits)
            + "echo =LIST\n"
            + scripts.listing_lines(paths)
        )
        await writer.add_bytes("script", script.encode("utf-8", "surrogateescape"))
        await writer.close()
        if framed:
            await channel.write(b"0\n")
        await channel.close_stdin()
        out = await reader
        code = await channel.wait()
    except BaseException as exc:
        reader.cancel()
        await _abort(channel)
        # Say what was being sent, unless the watchdog already said what happened.
        stalled = isinstance(exc, PeerStalled)
        if isinstance(exc, TransportError) and not stalled and item is not None:
            tail = f": {owner.stderr_tail[-1]}" if owner.stderr_tail is not said else ""
            why = "the upload stopped" if tail else "the container stopped (killed?)"
            raise TransportError(f"{why} during the upload of {item.path}{tail}") from exc
        raise
    return _results(owner, out, code, [u.path for u in uploads])


async def _stage(owner: ShellEndpoint, writer: TarWriter, name: str, item: FileItem) -> bool:
    """Stream one file into the archive; False when its content did not arrive whole.
    Its mode is what the Python agent would give it: the replaced file's permission
    bits (from the last scan) with the exec bits following the read bits."""
    entry = item.entry
    mode = file_mode(entry.executable, owner._perms.get(item.path) if item.expect else None)
    chunks = item.chunks if item.chunks is not None else _nothing()
    exact = await writer.add_file(name, entry.size, entry.mtime_ns // 10**9, mode, chunks)
    return exact and not getattr(item.chunks, "changed", False)


def _send_up(owner: ShellEndpoint, send: Callable[[bytes], Awaitable[None]], framed: bool) -> Send:
    """Writes to the upload pipe, paced, each piece as ``LEN\n`` + bytes when framed
    (the container then needs no end of input to know the archive is complete)."""

    # Under a bandwidth limit, frames are cut to an eighth of a second of the rate so the
    # pace stays smooth over any window (not one 1 MiB burst every few seconds).
    size = owner.upload_throttle.chunk_size(FRAME_BYTES)

    async def paced(data: bytes) -> None:
        for at in range(0, len(data), size):
            piece = data[at : at + size]
            await owner.upload_throttle.take(len(piece))
            await send(b"%d\n%s" % (len(piece), piece) if framed else piece)

    return paced


def _results(owner: ShellEndpoint, out: bytes, code: int, paths: list[RelPath]) -> WriteResult:
    if out.startswith(b"=NOROOT"):
        raise SafetyHalt(f"the container folder {owner.root} is gone; sync stopped")
    at = out.find(b"=LIST\n")
    if at < 0 or (at > 0 and out[at - 1 : at] != b"\n"):
        tail = " ".join(owner.stderr_tail[-3:]) or f"exit code {code}"
        problem = f"upload to the container failed: {tail}"
        return WriteResult({}, [Problem(p, problem) for p in paths])
    answers = changes.parse_answers(out[:at], len(paths))
    records = parse_records(out, at + 6, links=True, final=True)[0]
    owner._remember(records)
    entries = _entries_by_path(records)
    written: dict[RelPath, Entry | None] = {}
    for i in answers.done:
        entry = entries.get(paths[i])
        if entry is not None:
            written[paths[i]] = entry
    owner._baseline.note(records, written)
    problems = [Problem(paths[i], why) for i, why in answers.failed]
    return WriteResult(written, problems)


#: ``sh -c EXTRACT sh ROOT STAGE``: unpack stdin into ROOT/STAGE, run its ``script`` from
#: ROOT, remove the staging directory whatever happens.
EXTRACT = r"""
cd -- "$1" 2>/dev/null || { echo =NOROOT; exit 0; }
S=$2
trap 'rm -rf -- "$S"' EXIT
trap 'exit 1' INT TERM HUP
mkdir -- "$S" || exit 4
o=; read -r o </proc/$$/stat 2>/dev/null && printf '%s\n' "$o" >"$S/.owner"
if [ "$3" = framed ]; then
  while IFS= read -r n && [ "$n" -gt 0 ]; do
    dd bs="$n" count=1 iflag=fullblock 2>/dev/null || exit 6
  done | tar -x -o -f - -C "$S" || exit 5
else
  tar -x -o -f - -C "$S" || exit 5
fi
. "./$S/script"
"""

#: Largest frame of a framed upload (``dd`` holds one frame in memory).
FRAME_BYTES = 1 << 20


async def _abort(channel: Channel) -> None:
    """End an upload: closing stdin first lets ``tar`` see a cut archive and the script's
    EXIT trap remove the staging dir before the process is killed."""
    with contextlib.suppress(PodsyncError, OSError, asyncio.TimeoutError):
        await channel.close_stdin()
        await asyncio.wait_for(channel.wait(), 5)
    await channel.kill()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


async def _read_all(read: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        data = await read(1 << 18)
        if not data:
            return b"".join(parts)
        parts.append(data)


def _entries_by_path(records: list[Record]) -> dict[RelPath, Entry]:
    out: dict[RelPath, Entry] = {}
    for record in records:
        path, _ = record_path(record)
        if path is None or path == "":
            continue
        kind = record.kind
        if kind == FILE:
            out[path] = Entry(FILE, record.size, record.mtime_ns, bool(record.mode & 0o100))
        elif kind == DIR:
            out[path] = Entry(DIR)
        elif kind == LINK and record.target is not None:
            out[path] = Entry(LINK, target=record.target.decode("utf-8", "surrogateescape"))
    return out

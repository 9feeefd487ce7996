"""Parsing what the container's ``find``/``stat`` printed into validated entries.

Owns: the listing record format (see ``scripts.STAT_FORMAT``), its incremental parser and the
conversion of records into a :data:`~podsync.core.entry.Snapshot` (names validated with
``relpath``, excluded paths and their descendants dropped, unsyncable names reported). May
import: the standard library, ``podsync.core``, ``podsync.errors``, ``engine.shell.scripts``.
Pure: no I/O.

Everything here is UNTRUSTED input from the container: a malformed record or a path that
would leave the root raises :class:`~podsync.errors.ProtocolError` instead of being guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from podsync.core.entry import DIR, FILE, LINK, Entry, Kind, Snapshot, slotted
from podsync.core.paths import RelPath, ancestors, relpath, symlink_stays_inside
from podsync.engine.shell.scripts import FIND_OK_STATUS, STAGE_PREFIX
from podsync.errors import ProtocolError

S_IFMT = 0o170000
_KINDS: dict[int, Kind] = {0o100000: FILE, 0o040000: DIR, 0o120000: LINK}
#: mode, size, mtime seconds, then ``%y``'s date, time (its fraction kept) and zone. The
#: ``%y`` part may be missing (whole seconds): a name starts with "." and then "/" or ends, so
#: it cannot be taken for a date.
_HEAD = re.compile(
    rb"([0-9a-f]{1,8}) ([0-9]{1,20}) (-?[0-9]{1,20}) "
    rb"(?:[^ /]{1,16} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,9}))? [^ /]{1,16} )?"
)
_END = b"//\n"

Prune = Callable[[RelPath, bool], bool]
Warn = Callable[[str], None]


@slotted
@dataclass(frozen=True)
class Record:
    """One listed path as printed (``name`` starts with ``./`` or is ``.``)."""

    name: bytes
    mode: int
    size: int
    #: Nanoseconds: ``%Y`` plus the fraction of ``%y`` (0 when the container's stat prints
    #: none; see ``scripts.STAT_FORMAT``).
    mtime_ns: int
    target: bytes | None = None

    @property
    def kind(self) -> Kind | None:
        return _KINDS.get(self.mode & S_IFMT)

    def signature(self) -> tuple[object, ...]:
        """What a metadata poll compares: directories only by existence (their mtime moves
        with every child), files by size, mtime and exec bit, links by size and mtime."""
        kind = self.kind
        if kind == DIR:
            return (DIR,)
        return (kind, self.size, self.mtime_ns, self.mode & 0o100)


def parse_records(
    buf: bytes | bytearray, pos: int = 0, *, links: bool, final: bool
) -> tuple[list[Record], int, bool]:
    """Records from ``buf[pos:]``: (records, position after them, stopped at a marker).

    Parsing stops at a line starting with ``=`` (a marker; records start with a hex digit),
    or at an incomplete record, which is an error when ``final``. With ``links``, each
    symlink's record is followed by exactly ``size`` bytes of target and a newline.
    """
    out: list[Record] = []
    n = len(buf)
    while pos < n:
        if buf[pos : pos + 1] == b"=":
            return out, pos, True
        head = _HEAD.match(buf, pos)
        end = buf.find(_END, pos)
        if head is None or end < 0:
            if not final and end < 0 and (head is not None or n - pos < 128):
                break
            raise ProtocolError(
                f"the container's listing is garbled near {bytes(buf[pos : pos + 60])!r}"
            )
        mode, size, mtime = int(head[1], 16), int(head[2]), int(head[3]) * 10**9
        if head[4]:
            mtime += int(head[4].ljust(9, b"0"))
        name = bytes(buf[head.end() : end])
        after = end + len(_END)
        target: bytes | None = None
        if links and mode & S_IFMT == 0o120000:
            if after + size >= n:
                if final:
                    raise ProtocolError("the container's listing ends inside a symlink target")
                break
            if buf[after + size : after + size + 1] != b"\n":
                raise ProtocolError(f"the container's listing garbled the symlink {name!r}")
            target = bytes(buf[after : after + size])
            after += size + 1
        out.append(Record(name, mode, size, mtime, target))
        pos = after
    if final and pos < n:
        raise ProtocolError("the container's listing ends inside a record")
    return out, pos, False


_DONE = re.compile(rb"=DONE ([0-9]{1,3})\n\Z")
#: What ``find`` or ``stat`` print when the walk itself failed (no fork, out of memory, a
#: command line too long), as opposed to a path that vanished or cannot be read: the listing
#: then lacks paths that exist.
_FATAL = re.compile(
    rb"can't fork|cannot fork|out of memory|cannot allocate|argument list too long"
    rb"|resource temporarily unavailable|killed|can't execute|not found",
    re.I,
)

#: Endings of messages about one path (it vanished or cannot be read), never fatal.
_BENIGN = (b"No such file or directory", b"Permission denied", b"Not a directory")


def listing_complete(tail: bytes, stderr: bytes) -> None:
    """Check the end of a scan (``scripts.SCAN``): after the records, ``=DONE STATUS`` with a
    status of a complete walk, and nothing on stderr saying the walk failed. A cut, failed or
    empty-because-broken listing raises :class:`ProtocolError`: what it lacks is unknown,
    never deleted (the session reconnects and lists again)."""
    done = _DONE.match(tail)
    if done is None:
        raise ProtocolError(
            "the container's listing was cut short"
            + (f" near {tail[:40]!r}" if tail else " (no end marker)")
        )
    fatal = [
        line
        for line in stderr.splitlines()
        if not line.rstrip().endswith(_BENIGN) and _FATAL.search(line)
    ]
    if int(done[1]) > FIND_OK_STATUS or fatal:
        status = "find exit status " + done[1].decode()
        why = fatal[-1].decode("utf-8", "replace")[:160] if fatal else status
        raise ProtocolError(f"the container's listing failed: {why}")


def record_path(record: Record) -> tuple[RelPath | None, str]:
    """(root-relative path, "") or (None, why the name cannot be synced).

    Raises ProtocolError for a name find could not have printed (it would leave the root)."""
    raw = record.name
    if raw == b".":
        return RelPath(""), ""
    if not raw.startswith(b"./"):
        raise ProtocolError(f"the container listed {raw!r}, outside the sync folder")
    try:
        text = raw[2:].decode("utf-8")
    except UnicodeDecodeError:
        return None, "skipped: its name is not valid UTF-8"
    if "\\" in text:
        return None, "skipped: its name contains a backslash"
    return relpath(text), ""


def to_entry(record: Record, path: RelPath) -> Entry | str | None:
    """The Entry of a record (None for fifos, sockets, devices: never synced), or a string
    saying why a symlink is skipped."""
    kind = record.kind
    if kind == FILE:
        return Entry(FILE, record.size, record.mtime_ns, bool(record.mode & 0o100))
    if kind == DIR:
        return Entry(DIR)
    if kind != LINK:
        return None
    try:
        target = (record.target or b"").decode("utf-8")
    except UnicodeDecodeError:
        return "skipped: symlink target is not valid UTF-8"
    if not symlink_stays_inside(path, target):
        return f"skipped: symlink target '{target}' leaves the sync folder"
    return Entry(LINK, target=target)


def keep(path: RelPath, is_dir: bool, prune: Prune, pruned: set[RelPath]) -> bool:
    """False for our staging dirs and for paths the rules prune (or lying below one)."""
    if path.split("/", 1)[0].startswith(STAGE_PREFIX):
        return False
    if prune(path, is_dir):
        if is_dir:
            pruned.add(path)
        return False
    return True


def drop_below(paths: Iterable[RelPath], pruned: set[RelPath]) -> list[RelPath]:
    """Paths with no ancestor in ``pruned``."""
    if not pruned:
        return list(paths)
    return [p for p in paths if not any(a in pruned for a in ancestors(p))]


def to_snapshot(records: Iterable[Record], prune: Prune, warn: Warn) -> Snapshot:
    """Validated, filtered entries of ``records`` (the root itself is not included)."""
    found: Snapshot = {}
    pruned: set[RelPath] = set()
    for record in records:
        path, why = record_path(record)
        if path is None:
            warn(f"{record.name[2:].decode('utf-8', 'replace')}: {why}")
            continue
        if path == "" or not keep(path, record.kind == DIR, prune, pruned):
            continue
        entry = to_entry(record, path)
        if isinstance(entry, str):
            warn(f"{path}: {entry}")
        elif entry is not None:
            found[path] = entry
    return {p: found[p] for p in drop_below(found, pruned)}

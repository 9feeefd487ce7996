"""What one side knows about one path: :class:`Entry`, and a whole tree: :data:`Snapshot`.

Owns: the value types the planners compare. May import: the standard library and
``core.paths``; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Literal, Mapping, Optional, Tuple, Type, TypeVar, Union, cast

from podsync.core.paths import RelPath, canonical

Kind = Literal["file", "dir", "link"]

FILE: Kind = "file"
DIR: Kind = "dir"
LINK: Kind = "link"

#: Ranges of values from the other side: sizes are off_t, mtimes what ``os.utime(ns=...)``
#: and a 64-bit ``struct timespec`` accept; link targets at most PATH_MAX bytes.
SIZE_MAX = (1 << 63) - 1
MTIME_MIN = -(1 << 63)
MTIME_MAX = (1 << 63) - 1
TARGET_MAX = 4095

T = TypeVar("T")
_new = object.__new__
_set = object.__setattr__


def slotted(cls: Type[T]) -> Type[T]:
    """The dataclass ``cls`` rebuilt with ``__slots__`` (as ``dataclass(slots=True)`` does
    from Python 3.10): no dict per instance, about a third of the memory. A 120k-entry tree
    keeps several of these per path (issue 8: RSS). Build many with ``object.__setattr__``
    per field, as :func:`new_entry` does."""
    names: Tuple[str, ...] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    body = {k: v for k, v in vars(cls).items() if k not in (*names, "__dict__", "__weakref__")}
    body["__slots__"] = names

    def getstate(self: Any) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in names)

    def setstate(self: Any, state: Tuple[Any, ...]) -> None:
        for i, name in enumerate(names):
            _set(self, name, state[i])

    body["__getstate__"], body["__setstate__"] = getstate, setstate
    new = cast(Type[T], type(cls.__name__, cls.__bases__, body))
    new.__qualname__ = cls.__qualname__
    return new


@slotted
@dataclass(frozen=True)
class Entry:
    """Metadata of one path on one side.

    ``size`` and ``mtime_ns`` matter for files only; ``target`` for links only; ``digest``
    (hex SHA-256 of the content) is filled in only when a planner asked for it and is not
    part of equality. Directories compare equal whatever their mtime (it changes whenever
    a child does).
    """

    kind: Kind
    size: int = 0
    mtime_ns: int = 0
    executable: bool = False
    target: Optional[str] = None
    digest: Optional[str] = field(default=None, compare=False)

    def same_content(self, other: Optional["Entry"], granularity_ns: int = 1) -> bool:
        """True when ``other`` is the same kind and (for files) same size, exec bit and mtime
        at the given granularity (the coarser of the two sides' clocks)."""
        if other is None or other.kind != self.kind:
            return False
        if self.kind == DIR:
            return True
        if self.kind == LINK:
            return self.target == other.target
        return (
            self.size == other.size
            and self.executable == other.executable
            and self.mtime_ns // granularity_ns == other.mtime_ns // granularity_ns
        )

    def to_wire(self) -> list[object]:
        """Compact JSON form ``[kind, size, mtime_ns, exec, target]``."""
        return [self.kind[0], self.size, self.mtime_ns, 1 if self.executable else 0, self.target]

    @classmethod
    def from_wire(cls, raw: object) -> "Entry":
        """Parse the compact form, rejecting anything malformed (it comes from the other side)."""
        from podsync.errors import ProtocolError

        if not isinstance(raw, list) or len(raw) != 5:
            raise ProtocolError(f"malformed entry {raw!r:.100}")
        k, size, mtime, exe, target = raw
        kind = _KINDS.get(k) if isinstance(k, str) else None
        if (
            kind is None
            or type(size) is not int
            or type(mtime) is not int
            or type(exe) is not int
            or not (0 <= size <= SIZE_MAX and MTIME_MIN <= mtime <= MTIME_MAX and exe in (0, 1))
        ):
            raise ProtocolError(f"malformed entry {raw!r:.100}")
        if kind == LINK:
            if not (
                isinstance(target, str)
                and 0 < len(target) <= TARGET_MAX
                and "\x00" not in target
                and canonical(target)
            ):
                raise ProtocolError(f"malformed link entry {raw!r:.100}")
        elif target is not None:
            raise ProtocolError(f"malformed entry {raw!r:.100}")
        return new_entry(kind, size, mtime, bool(exe), target)


_KINDS: Dict[str, Kind] = {"f": FILE, "d": DIR, "l": LINK}


def new_entry(
    kind: Kind, size: int, mtime_ns: int, executable: bool, target: Optional[str]
) -> Entry:
    """``Entry(kind, size, mtime_ns, executable, target)`` without the frozen dataclass's
    ``__init__`` (~0.6 us instead of ~1 us; scans and listings build one per path).
    Arguments are trusted: callers have validated them."""
    entry: Entry = _new(Entry)
    _set(entry, "kind", kind)
    _set(entry, "size", size)
    _set(entry, "mtime_ns", mtime_ns)
    _set(entry, "executable", executable)
    _set(entry, "target", target)
    _set(entry, "digest", None)
    return entry


#: A whole tree (or a part of one): path -> entry. The root itself is not included.
Snapshot = Dict[RelPath, Entry]
SnapshotView = Mapping[RelPath, Entry]


class _Any:
    """Sentinel type for "whatever is there now" expectations."""

    def __repr__(self) -> str:
        return "ANY"


#: Expectation meaning "do not check what is there now".
ANY = _Any()

#: What a writer expects at a path before it changes it: an Entry (must still match, compared
#: with ``Entry.same_content``), None (must not exist), or ANY (no check).
Expect = Union[Entry, None, _Any]


@dataclass(frozen=True)
class Problem:
    """Per-path trouble, reported to the user; never aborts a batch."""

    path: RelPath
    message: str

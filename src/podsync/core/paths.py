"""Validated relative paths inside a sync root.

Owns: the one definition of a safe path. May import: the standard library only, no I/O.

A ``RelPath`` is a ``str`` that has passed :func:`relpath`: POSIX separators, no leading or
trailing slash, no empty, ``.`` or ``..`` component, no NUL, no backslash, and *canonical*
(below). The root itself is the empty string ``""``. Everything that comes from the other
side is parsed with :func:`relpath` at the edge, so nothing downstream can be handed an
escaping path.

Linux file names are bytes. They are synced byte-exact: a name is the ``str`` that
``os.fsdecode`` makes of its bytes under UTF-8 with ``surrogateescape`` (both sides run with
a UTF-8 filesystem encoding), so an undecodable byte ``0xNN`` is the lone surrogate
``U+DCNN`` (``0x80 <= NN <= 0xff``). Such a ``str`` is *canonical*: encoding it back
(``utf-8``/``surrogateescape``) and decoding again gives the same ``str``. Anything else is
refused: a surrogate outside ``U+DC80..U+DCFF`` has no bytes at all, and escapes of bytes
that form valid UTF-8 (``"\\udcc3\\udca9"`` for ``"\\u00e9"``) would be a second spelling of
the same file, one that could slip past an exclude pattern or a same-path check. For output,
:func:`printable` shows undecodable bytes as ``\\xNN`` and control characters escaped.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, NewType, Set, Tuple, TypeVar

from podsync.errors import UnsafePath

RelPath = NewType("RelPath", str)
T = TypeVar("T")

ROOT = RelPath("")


def canonical(text: str) -> bool:
    """True when ``text`` is exactly what ``os.fsdecode`` (UTF-8, surrogateescape) makes of
    its own bytes. Free for ASCII; one encode and decode otherwise."""
    if text.isascii():
        return True
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape") == text
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return False


def printable(text: str) -> str:
    """``text`` as it may be shown on one line: undecodable bytes as ``\\xNN``, control and
    other unprintable characters as Python escapes (``\\n``, ``\\x1b``, ``\\u200b``).
    Identity (and one C-level scan) for ordinary text."""
    if text.isprintable():
        return text
    return "".join(_shown(ch) for ch in text)


def _shown(ch: str) -> str:
    if ch.isprintable():
        return ch
    if "\udc80" <= ch <= "\udcff":
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")


def relpath(value: object) -> RelPath:
    """Return ``value`` as a RelPath or raise :class:`UnsafePath` saying why it is unsafe."""
    if not isinstance(value, str):
        raise UnsafePath(f"path {value!r} is not a string")
    if value == "":
        return ROOT
    if "\x00" in value:
        raise UnsafePath(f"path {value!r} contains a NUL byte")
    if not canonical(value):
        raise UnsafePath(
            f"path {value!r} is not a canonical file name (a surrogate that is no "
            "undecodable byte, or a second spelling of a UTF-8 name)"
        )
    if "\\" in value:
        raise UnsafePath(f"path {value!r} contains a backslash")
    if value.startswith("/"):
        raise UnsafePath(f"path {value!r} is absolute")
    for part in value.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePath(f"path {value!r} has an empty, '.' or '..' component")
    return RelPath(value)


def join(parent: RelPath, name: str) -> RelPath:
    """Child ``name`` of ``parent`` (``name`` must be a single safe component)."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\x00" in name
        or "\\" in name
        or not canonical(name)
    ):
        raise UnsafePath(f"file name {name!r} is not a single safe component")
    return RelPath(f"{parent}/{name}" if parent else name)


def parent(path: RelPath) -> RelPath:
    """Parent of ``path``; the parent of a top-level name is the root ``""``."""
    head, _, _ = path.rpartition("/")
    return RelPath(head)


def basename(path: RelPath) -> str:
    return path.rpartition("/")[2]


def is_within(path: RelPath, ancestor: RelPath) -> bool:
    """True when ``path`` equals ``ancestor`` or lies below it."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + "/")


def ancestors(path: RelPath) -> list[RelPath]:
    """Proper ancestors of ``path`` from the top down, excluding the root."""
    parts = path.split("/")
    return [RelPath("/".join(parts[:i])) for i in range(1, len(parts))]


def depth_key(path: RelPath) -> tuple[int, str]:
    """Sort key putting parents before children (creation order)."""
    return (path.count("/") if path else -1, path)


def symlink_stays_inside(link: RelPath, target: str) -> bool:
    """True when a symlink at ``link`` pointing to ``target`` resolves inside the root.

    Only relative targets can stay inside; the check is lexical (no I/O) because both
    sides must agree without touching the disk.
    """
    if not target or target.startswith("/") or "\x00" in target or "\\" in target:
        return False
    if not canonical(target):
        return False
    stack = link.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return False
            stack.pop()
        else:
            stack.append(part)
    return bool(stack)


def minimal_roots(paths: Iterable[RelPath]) -> List[RelPath]:
    """The smallest set of subtrees covering ``paths``: paths lying below another given path
    are dropped (sorted; ``[""]`` when the root itself is given). O(paths x depth)."""
    chosen: Set[RelPath] = set()
    for path in sorted(set(paths), key=lambda q: (q.count("/"), q)):
        if path == "":
            return [ROOT]
        parts = path.split("/")
        if any("/".join(parts[:i]) in chosen for i in range(1, len(parts))):
            continue
        chosen.add(path)
    return sorted(chosen)


def keep_unknown(
    fresh: Dict[RelPath, T], known: Mapping[RelPath, T], unknown: Iterable[RelPath]
) -> Dict[RelPath, T]:
    """Put back into ``fresh`` (a new scan) what ``known`` (the last knowledge of that side)
    holds at and below each path of ``unknown`` (what the scan could not read: an
    unlistable directory, an entry that could not be lstat'ed), and return ``fresh``.

    A scan that cannot read a directory sees nothing in it; read as "gone", that would
    delete the other side's copies. Kept as last known, nothing changes there until the
    path can be read again. Entries the scan did see are left as they are. O(known) when
    ``unknown`` is not empty, free otherwise.
    """
    paths = set(unknown)
    if not paths or not known:
        return fresh
    if ROOT in paths:
        below: Tuple[str, ...] = ("",)
    else:
        below = tuple(p + "/" for p in paths)
    for path, value in known.items():
        if (path in paths or path.startswith(below)) and path not in fresh:
            fresh[path] = value
    return fresh

"""A gitignore matcher that agrees with git (2.39) bit for bit.

Owns: parsing one gitignore line (gitignore(5)) into a :class:`ParsedPattern`, translating
git's ``wildmatch`` into regular expressions, and :func:`validate_pattern`.
May import: the standard library only, no I/O (this module ships inside the container agent).

How git reads one line, and how this module mirrors it (``dir.c``/``wildmatch.c``):

* An empty line or one starting with ``#`` is skipped. Otherwise unescaped trailing spaces (not
  tabs) are trimmed, a leading ``!`` negates, a trailing ``/`` means "directories only".
* A pattern with no other ``/`` matches the basename at any depth. Otherwise it is matched
  against the whole path from the root (a leading ``/`` only anchors). Git first compares the
  literal part before the first wildcard (``*?[\\``) and hands only the rest to wildmatch, so a
  ``**`` right after that literal prefix counts as "at the start": ``x/a**`` matches ``x/a/b``
  and ``foo**/bar`` matches ``foobar``. We reproduce that quirk on purpose.
* wildmatch works on bytes: ``?`` and ``[...]`` match one byte of the UTF-8 name, never ``/``.
  Paths and patterns are therefore matched in a "byte view" (UTF-8 bytes decoded as latin-1;
  ASCII strings are their own byte view, so the common case costs nothing).
* Case-sensitive, as git on Linux (``core.ignorecase=false``).
* ``**/name`` (``name`` without ``/``) is the same as the basename pattern ``name`` and is
  stored as one; plain-text forms are recognised so they need no regex (see ParsedPattern).

What git accepts but never matches is rejected here (see :func:`validate_pattern`): such a
pattern in a config is always a mistake, and saying so beats silently syncing the files.
Evaluating compiled lists fast is :mod:`podsync.core.excludes`' job.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

_GLOB_SPECIAL = "*?[\\"

# git's own ctype tables (not the C library's): [:space:] is only \t \n \r and space.
_CLASSES: Dict[str, FrozenSet[int]] = {
    "alnum": frozenset(map(ord, string.ascii_letters + string.digits)),
    "alpha": frozenset(map(ord, string.ascii_letters)),
    "blank": frozenset(map(ord, " \t")),
    "cntrl": frozenset([*range(0, 32), 127]),
    "digit": frozenset(map(ord, string.digits)),
    "graph": frozenset(range(33, 127)),
    "lower": frozenset(map(ord, string.ascii_lowercase)),
    "print": frozenset(range(32, 127)),
    "punct": frozenset(map(ord, string.punctuation)),
    "space": frozenset(map(ord, " \t\n\r")),
    "upper": frozenset(map(ord, string.ascii_uppercase)),
    "xdigit": frozenset(map(ord, string.hexdigits)),
}
_ALL_BYTES = frozenset(range(1, 256))
_SLASH = ord("/")
_UNCLOSED = "a '[' is never closed, so git never matches it; add ']' or write '\\[' for a '['"


class NeverMatches(ValueError):
    """Git accepts the pattern but it can never match any path (a user mistake)."""


def byte_view(text: str) -> str:
    """``text`` as UTF-8 bytes, one char per byte (identity for ASCII). Undecodable file
    names (surrogate escapes from ``os.listdir``) map back to their original bytes."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def trim_trailing_spaces(line: str) -> str:
    """Drop trailing spaces unless the last one is escaped with a backslash (git's rule)."""
    last_space: Optional[int] = None
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == " ":
            if last_space is None:
                last_space = i
        elif c == "\\":
            i += 1
            if i == n:
                return line  # a trailing lone backslash keeps everything
            last_space = None
        else:
            last_space = None
        i += 1
    return line if last_space is None else line[:last_space]


def _char_class(members: FrozenSet[int]) -> str:
    if not members:
        return "(?!)"
    return "[" + "".join(f"\\x{b:02x}" for b in sorted(members)) + "]"


def _bracket(pat: str, i: int) -> Tuple[FrozenSet[int], int]:
    """Parse the ``[...]`` starting at ``pat[i] == '['`` as wildmatch does.

    Returns the set of bytes it matches (``/`` removed: with WM_PATHNAME a class never
    matches it, and basenames never contain it) and the index after the closing ``]``.
    """
    n = len(pat)
    j = i + 1
    negated = j < n and pat[j] in "!^"
    if negated:
        j += 1
    members: set[int] = set()
    prev: Optional[int] = None  # wildmatch's prev_ch; None where it is 0
    first = True
    while True:
        if j >= n:
            raise NeverMatches(_UNCLOSED)
        c = pat[j]
        if c == "]" and not first:
            break
        first = False
        cur: Optional[int]
        if c == "\\":
            j += 1
            if j >= n:
                raise NeverMatches(_UNCLOSED)
            cur = ord(pat[j])
            members.add(cur)
        elif c == "-" and prev is not None and j + 1 < n and pat[j + 1] != "]":
            j += 1
            hi_c = pat[j]
            if hi_c == "\\":
                j += 1
                if j >= n:
                    raise NeverMatches(_UNCLOSED)
                hi_c = pat[j]
            members.update(range(prev, ord(hi_c) + 1))
            cur = None
        elif c == "[" and j + 1 < n and pat[j + 1] == ":":
            end = pat.find("]", j + 2)
            if end < 0:
                raise NeverMatches(_UNCLOSED)
            if end - (j + 2) - 1 < 0 or pat[end - 1] != ":":
                members.add(ord("["))  # no ':]': a plain '[' member, go on after it
                cur = ord("[")
            else:
                name = pat[j + 2 : end - 1]
                if name not in _CLASSES:
                    raise NeverMatches(
                        f"unknown character class '[:{name}:]'; use one of "
                        + ", ".join(sorted(_CLASSES))
                    )
                members.update(_CLASSES[name])
                cur = None
                j = end
        else:
            cur = ord(c)
            members.add(cur)
        prev = cur
        j += 1
    result = (_ALL_BYTES - members) if negated else frozenset(members)
    return result - {_SLASH}, j + 1


class _Segments:
    """Tracks path segments of a pattern to spot ones no path can have ('//', '.', '..')."""

    def __init__(self) -> None:
        self.literal: Optional[str] = ""  # None once the segment holds a wildcard

    def add(self, literal: Optional[str]) -> None:
        if self.literal is not None:
            self.literal = None if literal is None else self.literal + literal

    def close(self) -> None:
        if self.literal == "":
            raise NeverMatches("contains an empty path segment ('//'); use a single '/'")
        if self.literal == ".":
            raise NeverMatches(
                "a '.' path segment never matches in gitignore syntax; drop it "
                "(a leading '/' anchors at the sync root: '/src', not './src')"
            )
        if self.literal == "..":
            raise NeverMatches(
                "a '..' path segment never matches: patterns cannot leave the sync root; remove it"
            )
        self.literal = ""


def translate(body: str, sub_start: int) -> str:
    """Regex source equivalent to ``wildmatch(body, text, WM_PATHNAME)`` on byte views.

    ``sub_start`` is where git starts wildmatch (after the literal prefix): a ``**`` there
    counts as being at the start of the pattern. Raises :class:`NeverMatches`.
    """
    out: List[str] = []
    seg = _Segments()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            if i + 1 >= n:
                raise NeverMatches(
                    "ends with an unescaped '\\', which git never matches; "
                    "remove it or write '\\\\' for a literal backslash"
                )
            lit = body[i + 1]
            if lit == "/":
                seg.close()
            else:
                seg.add(lit)
            out.append(re.escape(lit))
            i += 2
        elif c == "?":
            seg.add(None)
            out.append("[^/]")
            i += 1
        elif c == "[":
            members, i = _bracket(body, i)
            seg.add(None)
            out.append(_char_class(members))
        elif c == "*":
            j = i
            while j < n and body[j] == "*":
                j += 1
            seg.add(None)
            at_start = i == sub_start or (i > 0 and body[i - 1] == "/")
            nxt = body[j : j + 2]
            if j - i >= 2 and at_start and (nxt == "" or nxt[0] == "/" or nxt == "\\/"):
                if nxt == "":
                    out.append(".*")
                elif nxt[0] == "/":  # '**/' matches zero or more whole directories
                    out.append("(?:.*/)?")
                    if i == 0 or body[i - 1] == "/":
                        seg.close()
                    # else (git's prefix quirk, 'a**/'): with zero directories what follows
                    # continues the current segment, so no new segment starts here.
                    j += 1
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
            i = j
        elif c == "/":
            seg.close()
            out.append("/")
            i += 1
        else:
            seg.add(c)
            out.append(re.escape(c))
            i += 1
    seg.close()
    return "".join(out)


def simple_length(text: str) -> int:
    """Length of the literal prefix before the first wildcard character (git's name)."""
    for i, c in enumerate(text):
        if c in _GLOB_SPECIAL:
            return i
    return len(text)


@dataclass(frozen=True)
class ParsedPattern:
    """One gitignore line, parsed.

    ``kind`` and ``text``: "literal" (the name or path), "suffix" (``*`` + text), "under"
    (``dir/**``: text is ``dir/``), "inside" (``**/name/**``: text is ``name``), all plain
    text (comparing text is comparing bytes), or "regex" (the source, to match against a
    :func:`byte_view`). ``basename`` patterns match the last path component only,
    the others the whole path from the root.

    ``hint`` is a cheap necessary condition for a regex pattern to match a path: ("end", s)
    the path ends with s, ("start", s) starts with s, ("in", s) contains s, ("", "") none.
    Hints are ASCII, so testing them on the plain path is testing its bytes.
    """

    source: str
    negative: bool
    dir_only: bool
    basename: bool
    kind: str
    text: str
    hint: Tuple[str, str] = ("", "")


def check_representable(pattern: str) -> None:
    """Raise ValueError for strings that cannot be one line of a .gitignore file."""
    if "\x00" in pattern:
        raise ValueError("contains a NUL byte; remove it")
    if "\n" in pattern or "\r" in pattern:
        raise ValueError("contains a line break; put each pattern in its own list entry")
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid text (lone surrogate); fix its encoding") from None


def parse_pattern(pattern: str) -> Optional[ParsedPattern]:
    """Parse one gitignore line; None for blank lines and comments (git skips them).

    Raises ValueError when the string cannot be a .gitignore line and
    :class:`NeverMatches` when git would accept it but never match anything.
    """
    check_representable(pattern)
    if pattern == "" or pattern.startswith("#"):
        return None
    line = trim_trailing_spaces(pattern)
    if line == "":
        return None  # git adds an empty pattern, which matches nothing: same as skipping
    negative = line.startswith("!")
    body = line[1:] if negative else line
    dir_only = body.endswith("/")
    if dir_only:
        body = body[:-1]
    if body == "" and negative:
        raise NeverMatches(
            "a lone '!' negates nothing; remove it (write '\\!' to match a name starting with '!')"
        )
    if body == "":
        raise NeverMatches("'/' alone names the sync root, which is never excluded; remove it")
    basename = "/" not in body
    if not basename and body.startswith("/"):
        body = body[1:]
    if body.startswith("**/") and len(body) > 3 and "/" not in body[3:]:
        basename, body = True, body[3:]  # '**/name' is exactly the basename pattern 'name'
    prefix = simple_length(body)
    # The prefix is pure literal text, so its length is the same in the byte view.
    regex = translate(byte_view(body), 0 if basename else len(byte_view(body[:prefix])))
    middle = body[3:-3]  # of '**/name/**'
    inside = body[:3] == "**/" and body[-3:] == "/**" and middle and "/" not in middle
    if prefix == len(body):
        kind, text = "literal", body
    elif basename and body[0] == "*" and simple_length(body[1:]) == len(body) - 1:
        kind, text = "suffix", body[1:]
    elif body.endswith("/**") and prefix == len(body) - 2:
        kind, text = "under", body[:-2]  # 'dir/**': everything below dir
    elif inside and simple_length(middle) == len(middle):
        kind, text = "inside", middle  # '**/name/**': everything below any 'name'
    else:
        hint = _hint(body, basename)
        return ParsedPattern(pattern, negative, dir_only, basename, "regex", regex, hint)
    return ParsedPattern(pattern, negative, dir_only, basename, kind, text)


def _hint(body: str, basename: bool) -> Tuple[str, str]:
    """A necessary condition on the whole path for ``body`` to match (see ParsedPattern)."""
    view = byte_view(body)
    runs: List[str] = [""]  # literal text between wildcards; runs[-1] is being built
    i, n = 0, len(view)
    while i < n:
        c = view[i]
        if c == "[":
            i = _bracket(view, i)[1]
        elif c == "?":
            i += 1
        elif c == "*":
            while i < n and view[i] == "*":
                i += 1
            if i < n and view[i] == "/":
                i += 1  # after '**' the slash may match nothing ('**/' = zero dirs)
        else:
            if c == "\\":
                i += 1
            runs[-1] += view[i]
            i += 1
            continue
        runs.append("")
    ascii_runs = [r for r in runs if r and r.isascii()]
    if runs[-1] and runs[-1].isascii():
        return ("end", runs[-1])
    if not basename and runs[0] and runs[0].isascii():
        return ("start", runs[0])
    if ascii_runs:
        return ("in", max(ascii_runs, key=len))
    return ("", "")


def validate_pattern(pattern: str) -> Optional[str]:
    """None when ``pattern`` is a usable gitignore line, else what is wrong and how to fix it.

    Git itself rejects nothing; it silently keeps patterns that can never match. Those are
    reported here: a lone '!' or '/', a trailing unescaped backslash, a '[' that is never
    closed or names an unknown '[:class:]', an empty ('//'), '.' or '..' path segment. Strings
    that cannot be a .gitignore line at all (NUL byte, line break) are reported too. Blank
    entries and '#' comments are valid and ignored, as in a .gitignore file; note that
    trailing spaces are trimmed unless escaped ('\\ ').
    """
    if not isinstance(pattern, str):
        return "is not a string"
    try:
        parse_pattern(pattern)
    except ValueError as exc:
        return str(exc)
    return None


def literal_pattern(path: str) -> str:
    """A pattern matching exactly the path ``path`` (relative to the root, any kind), every
    character taken literally: ``/`` anchors it, glob characters and a trailing space are
    escaped with a backslash (git's rules)."""
    body = "".join("\\" + c if c in _GLOB_SPECIAL else c for c in path)
    if body.endswith(" "):
        body = body[:-1] + "\\ "
    return "/" + body

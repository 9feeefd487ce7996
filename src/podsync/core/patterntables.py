"""How one ordered gitignore list is evaluated fast: the tables behind ``Matcher``.

Owns: :func:`here_function` (a list's verdict on a path itself, as one closure),
:func:`matches_function` (full git semantics on top of it, directory verdicts memoised and
bounded) and :func:`never`. What a single pattern means is :mod:`podsync.core.gitignore`'s
job; the lists of a sync are :mod:`podsync.core.excludes`'. May import: the standard library
and ``podsync.core.gitignore``; no I/O (ships inside the container agent).

See :mod:`podsync.core.excludes` for the speed figures: literal names and paths are set
lookups, ``*suffix`` patterns one ``str.endswith``, other wildcards one combined regex per
kind run only when a cheap necessary condition holds.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Sequence, Tuple

from podsync.core.gitignore import ParsedPattern, byte_view

#: A question asked of a path: ``(path, is_dir) -> bool``.
Check = Callable[[str, bool], bool]
_DIR_CACHE_LIMIT = 16384


def _precheck(hints: Sequence[Tuple[str, str]]) -> Callable[[str], bool]:
    """A cheap test that is True whenever one of the patterns with ``hints`` may match."""
    if any(kind == "" for kind, _ in hints):
        return lambda path: True
    ends = tuple(text for kind, text in hints if kind == "end")
    starts = tuple(text for kind, text in hints if kind == "start")
    needles = tuple(text for kind, text in hints if kind == "in")
    if not needles:
        return lambda path: path.endswith(ends) or path.startswith(starts)
    if len(needles) == 1:
        needle = needles[0]
        return lambda path: path.endswith(ends) or path.startswith(starts) or needle in path
    return lambda path: (
        path.endswith(ends) or path.startswith(starts) or any(n in path for n in needles)
    )


class _Bucket:
    """Wildcard patterns matched against the basename, or against the whole path: one
    combined regex whose alternatives are in descending pattern order, each its own group,
    so the first alternative that fully matches (``lastindex``) is the last pattern."""

    def __init__(self, items: Sequence[Tuple[int, ParsedPattern]], basename: bool) -> None:
        ordered = sorted(items, key=lambda item: -item[0])
        source = "|".join(f"({pat.text})" for _, pat in ordered)
        self.fullmatch = re.compile(source, re.DOTALL).fullmatch
        self.index = (-1, *(idx for idx, _ in ordered))
        self.maybe = _precheck([pat.hint for _, pat in ordered])
        self.basename = basename

    def last(self, path: str) -> int:
        """Index of the last pattern of this bucket matching ``path``, -1 when none does."""
        if not self.maybe(path):
            return -1
        view = byte_view(path)
        if self.basename:
            view = view[view.rfind("/") + 1 :]
        m = self.fullmatch(view)
        return -1 if m is None else self.index[m.lastindex or 0]


class _Table:
    """The patterns that can apply to one kind of entry (files, or directories).

    Plain-text kinds are answered for the whole path without splitting it: ``top`` holds
    exact paths (anchored literals, and basename literals for top-level entries), ``tail``
    the endings ``/name`` of basename literals and the ``*suffix`` suffixes, ``starts`` the
    ``dir/`` of ``dir/**`` and the ``name/`` of ``**/name/**``, ``needles`` the ``/name/`` of
    the latter. The per-kind lists give the index of the LAST matching pattern (git: last
    match wins); wildcard patterns go to at most two regex buckets.
    """

    def __init__(self, patterns: Sequence[Tuple[int, ParsedPattern]]) -> None:
        self.base_lit: Dict[str, int] = {}
        self.path_lit: Dict[str, int] = {}
        suffixes: List[Tuple[int, str]] = []
        below: List[Tuple[int, str, str]] = []  # (index, start, needle or "")
        base_rx: List[Tuple[int, ParsedPattern]] = []
        path_rx: List[Tuple[int, ParsedPattern]] = []
        for idx, pat in patterns:  # ascending, so later patterns overwrite earlier ones
            if pat.kind == "literal":
                (self.base_lit if pat.basename else self.path_lit)[pat.text] = idx
            elif pat.kind == "suffix":
                suffixes.append((idx, pat.text))
            elif pat.kind == "under":
                below.append((idx, pat.text, ""))
            elif pat.kind == "inside":
                below.append((idx, pat.text + "/", f"/{pat.text}/"))
            else:
                (base_rx if pat.basename else path_rx).append((idx, pat))
        self.suffixes = tuple(reversed(suffixes))
        self.below = tuple(reversed(below))
        self.top = frozenset(self.base_lit) | frozenset(self.path_lit)
        self.tail = tuple("/" + name for name in self.base_lit) + tuple(s for _, s in suffixes)
        self.starts = tuple(start for _, start, _ in below)
        self.needles = tuple(needle for _, _, needle in below if needle)
        self.buckets = tuple(
            _Bucket(items, basename)
            for items, basename in ((base_rx, True), (path_rx, False))
            if items
        )

    def any_function(self) -> Callable[[str], bool]:
        """``any(path)``: whether any pattern matches ``path`` (not the root), specialised to
        the kinds present (the plain-literal case is the hot path of every scan)."""
        top, tail, starts, needles = self.top, self.tail, self.starts, self.needles
        lasts = tuple(bucket.last for bucket in self.buckets)
        if not (starts or lasts):
            return lambda path: path in top or path.endswith(tail)

        def any_match(path: str) -> bool:
            if path in top or path.endswith(tail) or path.startswith(starts):
                return True
            for needle in needles:
                if needle in path:
                    return True
            for last in lasts:  # noqa: SIM110 (a plain loop beats any() + generator here)
                if last(path) >= 0:
                    return True
            return False

        return any_match

    def last(self, path: str) -> int:
        """Index of the last pattern matching ``path``, -1 when none does."""
        base = path[path.rfind("/") + 1 :]
        best = max(self.base_lit.get(base, -1), self.path_lit.get(path, -1))
        for idx, suffix in self.suffixes:  # descending index: the first hit is the last one
            if idx <= best:
                break
            if base.endswith(suffix):
                best = idx
                break
        for idx, start, needle in self.below:
            if idx <= best:
                break
            if path.startswith(start) or (needle and needle in path):
                best = idx
                break
        for bucket in self.buckets:
            best = max(best, bucket.last(path))
        return best


def here_function(parsed: Sequence[ParsedPattern]) -> Check:
    """Build ``matches_here`` for ``parsed`` as one closure (no attribute lookups per call)."""
    if not parsed:
        return never
    negative = tuple(p.negative for p in parsed)
    indexed = list(enumerate(parsed))

    def tables(keep: Callable[[ParsedPattern], bool]) -> Tuple[_Table, _Table]:
        chosen = [(i, p) for i, p in indexed if keep(p)]
        return _Table(chosen), _Table([(i, p) for i, p in chosen if not p.dir_only])

    pos_dirs, pos_files = tables(lambda p: not p.negative)
    pos_dirs_any, pos_files_any = pos_dirs.any_function(), pos_files.any_function()
    if not any(negative):

        def here(path: str, is_dir: bool) -> bool:
            return bool(path) and (pos_dirs_any(path) if is_dir else pos_files_any(path))

        return here

    neg_dirs, neg_files = tables(lambda p: p.negative)
    neg_dirs_any, neg_files_any = neg_dirs.any_function(), neg_files.any_function()
    all_dirs, all_files = tables(lambda p: True)

    def here_negatable(path: str, is_dir: bool) -> bool:
        if not path:
            return False
        if is_dir:
            if not neg_dirs_any(path):  # usual: no '!' pattern applies, any positive decides
                return pos_dirs_any(path)
            best = all_dirs.last(path)
        else:
            if not neg_files_any(path):
                return pos_files_any(path)
            best = all_files.last(path)
        return best >= 0 and not negative[best]

    return here_negatable


def matches_function(here: Check, cache: Dict[str, bool]) -> Check:
    """Build ``matches`` (full semantics) on top of ``here``, memoising directory verdicts."""

    def dir_excluded(directory: str) -> bool:
        pending = [directory]  # walk up to a known ancestor (or the top), decide top-down
        head, verdict = directory, False
        while True:
            cut = head.rfind("/")
            if cut < 0:
                break
            head = head[:cut]
            known = cache.get(head)
            if known is not None:
                verdict = known
                break
            pending.append(head)
        if len(cache) + len(pending) > _DIR_CACHE_LIMIT:
            cache.clear()  # bounded memory; a walk revisits few directories at a time
        for d in reversed(pending):
            verdict = verdict or here(d, True)
            cache[d] = verdict
        return verdict

    cache_get = cache.get

    def matches(path: str, is_dir: bool) -> bool:
        cut = path.rfind("/")
        if cut > 0:
            parent = path[:cut]
            verdict = cache_get(parent)
            if verdict is None:
                verdict = dir_excluded(parent)
            if verdict:
                return True
        return here(path, is_dir)

    return matches


def never(path: str, is_dir: bool) -> bool:
    return False

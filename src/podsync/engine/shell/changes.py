"""Shell scripts that change the container's tree: guarded moves out of staging, deletions.

Owns: the script text of write and delete batches and the parsing of their per-item
answers. May import: the standard library, ``podsync.core``, ``podsync.errors``,
``engine.shell.scripts``. Pure: builds strings, runs nothing.

Each item is one guarded step: check that no parent is a symlink or a non-directory (so
nothing is ever written outside the root), check the expectation with ``stat``/``readlink``,
then act (``mv -f`` from the staging directory, which is a rename inside one file system, or
``rm -rf``) and print ``K <index>`` or ``E <index> <reason>``. The check and the act are two
commands, so a change landing in the microseconds between them is not detected; the Python
agent has the same window between its ``lstat`` and ``rename``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from podsync.core.entry import ANY, DIR, FILE, LINK, Entry, Expect
from podsync.core.paths import RelPath, ancestors, parent
from podsync.engine.shell.scripts import dot, q
from podsync.errors import ProtocolError

#: Shell helpers every change script starts with. Positional parameters inside functions are
#: local in POSIX sh, so ``set --`` there does not disturb the caller.
#:   st P        -> T (f d l o n), SZ, MT (seconds, then "." and the fraction %y prints, if
#:                  any), X (owner exec bit 0/1), P (permission bits)
#:   chk P E...  -> 0 when P matches the expectation: a | n | f SIZE MTIME X | d | l TARGET
#:   par D...    -> 0 when each D is a real directory or absent (never a symlink)
#:   clr P       -> removes P when it is a symlink or a directory (mv would go into them)
#:   fck S M F X P -> 0 when $o (records of one ``stat -c '%s %Y %y %f %n//'`` over a
#:                  folder's files, framed by newlines) holds P as a regular file of size S,
#:                  mtime M seconds and fraction F (".digits" or empty), owner exec bit X:
#:                  ``%y`` is a 10-character date, a time and a 5-character zone (TZ is set
#:                  to UTC), ``%f`` of a regular file is 8xyz, the exec bit is the 4 of y, and
#:                  every wildcard stands for one character, so a match cannot span records
PRELUDE = r"""
export TZ=UTC0
st() { T=n; set -- $(stat -c '%f %s %Y %y' -- "$1" 2>/dev/null); [ $# -eq 6 ] || return 0
  m=$((0x$1)); SZ=$2; MT=$3; X=$(( (m & 64) != 0 )); P=$((m & 511))
  case $5 in *.*) MT=$3.${5#*.};; esac
  case $((m & 61440)) in 32768) T=f;; 16384) T=d;; 40960) T=l;; *) T=o;; esac; }
chk() { case $2 in a) return 0;; esac
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then [ "$2" = n ]; return; fi
  [ "$2" = n ] && return 1
  st "$1"; [ "$T" = "$2" ] || return 1
  case $2 in
    f) [ "$SZ" = "$3" ] && [ "$MT" = "$4" ] && [ "$X" = "$5" ];;
    l) t=$(readlink -- "$1" && echo .) && [ "${t%.}" = "$3" ];;
  esac; }
par() { for d do [ -L "$d" ] && return 1; [ -e "$d" ] && [ ! -d "$d" ] && return 1
  done; return 0; }
clr() { if [ -L "$1" ]; then rm -f -- "$1"; elif [ -d "$1" ]; then rm -rf -- "$1"; fi; }
fck() { case $4 in 1) x='[4567cdef]';; *) x='[012389ab]';; esac
  case $o in *"
$1 $2 "??????????" "??:??:??"$3 "?????" 8"[0-9a-f]$x[0-9a-f]" $5//
"*) return 0;; esac; return 1; }
"""

NL = "\n"


def fraction(mtime_ns: int, digits: int) -> str:
    """The fraction of a second as the container's ``stat -c %y`` prints it with ``digits``
    digits (".356054454"), "" for none."""
    return f".{mtime_ns % 10**9:09d}"[: digits + 1] if digits else ""


def expect_words(expect: Expect, digits: int) -> str:
    """The expectation as ``chk`` arguments (mtimes with ``digits`` digits of fraction)."""
    if expect is ANY:
        return "a"
    if expect is None:
        return "n"
    assert isinstance(expect, Entry)
    if expect.kind == FILE:
        mtime = f"{expect.mtime_ns // 10**9}{fraction(expect.mtime_ns, digits)}"
        return f"f {expect.size} {mtime} {1 if expect.executable else 0}"
    if expect.kind == LINK:
        return "l " + q((expect.target or "") + "\n")
    return "d"


def _guard(i: int, path: RelPath, expect: Expect, digits: int) -> str:
    """``if`` branches refusing the item when a parent is unsafe or the expectation fails."""
    parents = " ".join(q(dot(a)) for a in ancestors(path))
    unsafe = (
        f"! par {parents}; then echo 'E {i} a parent folder is a symlink or a file'\n"
        if parents
        else ""
    )
    changed = (
        f"! chk {q(dot(path))} {expect_words(expect, digits)}; then "
        f"echo 'E {i} changed in the container since it was scanned; left alone'\n"
    )
    return f"if {unsafe}elif {changed}" if unsafe else f"if {changed}"


def _mkparent(path: RelPath) -> str:
    up = ancestors(path)
    return f"mkdir -p -- {q(dot(up[-1]))} 2>/dev/null; " if up else ""


@dataclass(frozen=True)
class Upload:
    """One item of a write batch; ``staged`` is a file's name under ``$S`` (``GROUP/NAME``,
    one group per destination folder), None for dirs, links and content not received."""

    index: int
    path: RelPath
    entry: Entry
    expect: Expect
    staged: str | None


#: Files moved by one ``mv`` (its argv must stay well inside ARG_MAX).
MOVE_BATCH = 500


def write_script(uploads: Sequence[Upload], digits: int) -> str:
    """Directories first, then files grouped by destination folder (one ``mkdir -p`` and one
    ``mv -f SRC... DIR/`` per group, each item checked first), then symlinks. ``digits``: of
    the fraction of a second the container's ``stat`` prints (``probe``)."""
    out: list[str] = [PRELUDE]
    groups: dict[RelPath, list[Upload]] = {}
    for u in uploads:
        if u.entry.kind == DIR:
            out.append(_one(u, digits))
        elif u.entry.kind == FILE and u.staged is None:
            out.append(f"echo 'E {u.index} changed while being sent; will retry'\n")
        elif u.entry.kind == FILE:
            groups.setdefault(parent(u.path), []).append(u)
    for folder, members in groups.items():
        for start in range(0, len(members), MOVE_BATCH):
            out.append(_file_group(folder, members[start : start + MOVE_BATCH], digits))
    out += [_one(u, digits) for u in uploads if u.entry.kind == LINK]
    return "".join(out)


def _file_group(folder: RelPath, members: Sequence[Upload], digits: int) -> str:
    d = q(dot(folder))
    lines = ["ok=1; set --; k="]
    if folder:
        chain = " ".join(q(dot(a)) for a in [*ancestors(folder), folder])
        lines.append(f"if par {chain}; then mkdir -p -- {d} 2>/dev/null || ok=; else ok=; fi")
    known = [u for u in members if isinstance(u.expect, Entry) and u.expect.kind == FILE]
    checked = {u.index for u in known}
    if known:
        # One stat for every file whose old state is known; fck then looks records up.
        names = " ".join(q(dot(u.path)) for u in known)
        lines.append(f"o=$(stat -c '%s %Y %y %f %n//' -- {names} 2>/dev/null); o=\"{NL}$o{NL}\"")
    for u in members:
        p = q(dot(u.path))
        if u.index in checked:
            e = u.expect
            assert isinstance(e, Entry)
            frac = q(fraction(e.mtime_ns, digits))
            test = f"fck {e.size} {e.mtime_ns // 10**9} {frac} {1 if e.executable else 0} {p}"
        else:
            test = f"chk {p} {expect_words(u.expect, digits)}"
        lines.append(
            f"if [ -z \"$ok\" ]; then echo 'E {u.index} a parent folder is a symlink or a file'\n"
            f"elif ! {test}; then "
            f"echo 'E {u.index} changed in the container since it was scanned; left alone'\n"
            f"else {{ [ -d {p} ] || [ -L {p} ]; }} && clr {p}; "
            f'set -- "$@" "$S"/{q(u.staged or "")}; k="$k {u.index}"; fi'
        )
    lines.append(
        f'if [ $# -gt 0 ]; then if mv -f -- "$@" {d}/; then for i in $k; do echo "K $i"; done\n'
        'else for i in $k; do echo "E $i cannot move it into place"; done; fi; fi'
    )
    return "\n".join(lines) + "\n"


def _one(u: Upload, digits: int) -> str:
    """Script for one directory or symlink."""
    i, path, entry = u.index, u.path, u.entry
    p = q(dot(path))
    guard = _guard(i, path, u.expect, digits)
    fail = f"|| echo 'E {i} cannot create it in the container'"
    if entry.kind == DIR:
        make = f"{_mkparent(path)}clr {p}; rm -f -- {p}; mkdir -- {p}"
        act = f"{{ [ -d {p} ] && [ ! -L {p} ]; }} || {{ {make}; }}"
    else:
        link = f'"$S/l{i}"'
        make = f"ln -s -- {q(entry.target or '')} {link}"
        act = f"{_mkparent(path)}{make} && clr {p} && mv -f -- {link} {p}"
    return f"{guard}else {{ {act}; }} && echo 'K {i}' {fail}\nfi\n"


def delete_item(i: int, path: RelPath, expect: Expect, digits: int) -> str:
    """Script for one deletion (a path already gone counts as deleted)."""
    p = q(dot(path))
    return (
        f"if [ ! -e {p} ] && [ ! -L {p} ]; then echo 'K {i}'\nel{_guard(i, path, expect, digits)}"
        f"else rm -rf -- {p} && echo 'K {i}' || echo 'E {i} cannot remove it in the container'\n"
        "fi\n"
    )


@dataclass(frozen=True)
class Answers:
    """Per-item answers of a change script: indexes done, and (index, reason) left alone."""

    done: list[int]
    failed: list[tuple[int, str]]


def parse_answers(text: bytes, count: int) -> Answers:
    """Parse ``K i`` / ``E i reason`` lines (a change script's output before ``=LIST``)."""
    done: list[int] = []
    failed: list[tuple[int, str]] = []
    for line in text.decode("utf-8", "replace").splitlines():
        word, _, rest = line.partition(" ")
        index, _, reason = rest.partition(" ")
        if word not in ("K", "E") or not index.isdigit() or int(index) >= count:
            raise ProtocolError(f"the container's shell answered {line[:80]!r}")
        if word == "K":
            done.append(int(index))
        else:
            failed.append((int(index), reason))
    return Answers(done, failed)

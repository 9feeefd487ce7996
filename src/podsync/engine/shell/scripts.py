"""The shell side of the shell agent: POSIX ``sh`` snippets and ``find`` expressions.

Owns: every command line and script the shell agent runs in the container, the translation
of gitignore patterns into container-side ``find -prune`` tests, and shell quoting. May
import: the standard library only. Pure: builds strings, runs nothing.

Everything here must work with busybox's applets as well as GNU coreutils/findutils and with
``dash`` as well as busybox ``ash``. Facts this relies on (checked on busybox 1.35, GNU
findutils 4.9, coreutils 9.1, dash 0.5):

- ``stat -c '%f %s %Y %y %n'`` prints the raw mode in hex, the size (for a symlink: the length
  of its target), the mtime in whole seconds, the mtime as a local date, time with nine
  digits of fraction and zone, and the name exactly as given; neither stat escapes names in
  ``-c`` output. ``%Y`` alone has whole seconds in both, so the fraction comes from ``%y``.
- A path printed by ``find .`` never contains ``//`` (every component is non-empty), so the
  record terminator ``//\\n`` cannot occur inside a name: any file name parses.
- busybox ``find`` drops the pending batch of an ``-exec ... {} +`` written inside
  ``\\( \\)``: batched execs are only ever used at the top level of the expression.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

#: Listing record: hex mode, size, mtime (s), mtime (date, time.fraction, zone), path, then
#: the terminator ``//``. Without the fraction a same-size rewrite within one second would
#: look unchanged.
STAT_FORMAT = "%f %s %Y %y %n//"

#: Staging directories live in the sync root (same file system, so ``mv`` is a rename); scans
#: prune them and the client drops any name with this prefix at the top level.
STAGE_PREFIX = ".podsync-stage-"

#: Per symlink: its stat record, then exactly ``size`` bytes of target and a newline
#: (``echo .`` keeps trailing newlines of a target through the command substitution).
_LINKS = (
    'for f do s=$(stat -c "$0" -- "$f") || continue; '
    't=$(readlink -- "$f" && echo .) || continue; '
    'printf "%s\\n%s" "$s" "${t%.}"; done'
)

#: Largest argv payload we put on one container command line (ARG_MAX is 128 KiB per
#: argument and ~2 MiB in total on Linux); longer lists are split.
ARGV_BUDGET = 96 * 1024

_GLOB = frozenset("*?")
_SPECIAL = frozenset("*?[]\\!#")


def q(value: str) -> str:
    """``value`` as one shell word (any characters but NUL)."""
    return shlex.quote(value)


def dot(path: str) -> str:
    """A root-relative path as find/stat see it after ``cd ROOT`` (never starts with ``-``)."""
    return "./" + path if path else "."


# -- pruning --------------------------------------------------------------------------------


def _translate(pattern: str) -> list[str] | None:
    """One gitignore pattern as an exact ``find`` test on directories, or None when find
    cannot express it exactly (the client-side filter then does the work alone)."""
    body = pattern[:-1] if pattern.endswith("/") else pattern
    if body.startswith("**/"):
        body = body[3:]
        if "/" in body:
            return None
    if not body or body.endswith(" ") or any(c in _SPECIAL - _GLOB for c in body):
        return None
    if "/" not in body:
        # Basename pattern, any depth. fnmatch without flags matches like git's wildmatch
        # here: no '/' to cross, and a leading '.' is not special in either.
        if body in (".", ".."):
            return None
        return ["-name", body]
    anchored = body[1:] if body.startswith("/") else body
    if not anchored or any(c in _GLOB for c in anchored):
        return None  # find -path's '*' crosses '/', git's does not
    parts = anchored.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return ["-path", "./" + anchored]


def prune_tests(patterns: Sequence[str], always: Sequence[str] = ()) -> list[str]:
    """``find`` tests matching the directories that ``patterns`` (excludePaths, in order)
    certainly exclude, plus the top-level names in ``always``. A pattern followed by any
    negation is not used: the negation might re-include what it matched, and only the
    client-side filter can tell."""
    last_negation = max((i for i, p in enumerate(patterns) if p.startswith("!")), default=-1)
    tests: list[list[str]] = [["-path", "./" + name] for name in always]
    for i, pattern in enumerate(patterns):
        if i < last_negation or pattern.startswith("!"):
            continue
        test = _translate(pattern)
        if test is not None and test not in tests:
            tests.append(test)
    out: list[str] = []
    for test in tests:
        out += (["-o"] if out else []) + test
    return out


def record_actions(*, links: bool) -> list[str]:
    """find actions printing one record per path (link targets too when ``links``)."""
    expr = []
    if links:
        expr = ["-type", "l", "-exec", "sh", "-c", _LINKS, STAT_FORMAT, "{}", "+", "-o"]
    return [*expr, "-exec", "stat", "-c", STAT_FORMAT, "{}", "+"]


def listing_expression(prune: Sequence[str], *, top: bool, links: bool) -> list[str]:
    """The find expression after the start points: prune staging dirs and ``prune`` tests,
    then one record per path."""
    expr = (["-mindepth", "1"] if top else []) + ["(", *_pruned(prune), ")", "-prune", "-o"]
    return expr + record_actions(links=links)


def _pruned(prune: Sequence[str]) -> list[str]:
    """The test matching what listings never enter: staging dirs and ``prune`` dirs."""
    stage = ["-path", "./" + STAGE_PREFIX + "*"]
    return stage + (["-o", "-type", "d", "(", *prune, ")"] if prune else [])


# -- the poll loop --------------------------------------------------------------------------

#: ``find`` tests a changed path passes: its inode changed within the last minute. ``-cmin``
#: (busybox and GNU) looks at the ctime, so content writes, ``touch -d`` into the past, chmod,
#: renames and, through the parent directory, creations and deletions all count; the age is
#: taken at each walk, so no marker file and no same-second race. The loop lists the whole
#: tree again whenever two turns lie more than :data:`POLL_GAP_SECONDS` apart.
CHANGED = ["-cmin", "-1"]

#: A turn further than this from the previous one lists the whole tree (the ``-cmin`` window
#: is 60 s; a stopped container, a suspended laptop or a clock jump must not lose a change).
POLL_GAP_SECONDS = 30

#: Every this many turns the loop lists the whole tree anyway (a safety net for file systems
#: whose ctime misbehaves; about one full listing per 5 minutes at the 0.5 s default).
POLL_FULL_EVERY = 600


def _scripts(prune: Sequence[str]) -> tuple[str, str]:
    """The two batch scripts of a walk (``$F`` the record format): for the folders whose
    entries changed since the previous turn, ``=D`` and their records, then ``=K`` and the
    records of all their children (a deletion or a rename away shows as a missing child);
    for other changed paths, ``=C`` and their records. "{}" is written ``\\{\\}``: find
    refuses a second "{}" among its -exec words."""
    kids = ["-mindepth", "1", "-maxdepth", "1", "(", *_pruned(prune), ")", "-prune", "-o"]
    return (
        'echo =D; stat -c "$F" -- "$@"; echo =K; find "$@" '
        + " ".join(q(w) for w in kids)
        + ' -exec stat -c "$F" \\{\\} +',
        'echo =C; stat -c "$F" -- "$@"',
    )


def poll_script(root: str, interval: float, prune: Sequence[str]) -> str:
    """The poll loop (run as ``sh -c SCRIPT``): a full listing (``=BEGIN`` records ``=END``)
    on the first turn, after a gap and every :data:`POLL_FULL_EVERY` turns; otherwise one
    ``find`` walk that prints nothing for an unchanged tree, answered ``=T`` when its output
    is as last time and ``=PART`` sections ``=END`` when not. A walk that failed (``find``
    exit status above 1: killed, out of memory, no fork) says ``=CUT`` instead of ``=END``
    or ``=T`` (after a full listing: ``\\n=CUT``, the walk may have stopped inside a record),
    and the next turn lists the whole tree again.

    A folder's entries changed since the previous turn when its mtime is at least that
    turn's start second: ``-newer`` a marker file dated one second before (find compares
    whole seconds). Without a marker (no writable ``mktemp``) every recently changed folder
    is listed with its children."""
    full = " ".join(q(w) for w in listing_expression(prune, top=True, links=False))
    dirs, other = _scripts(prune)
    skip = " ".join(q(w) for w in ["(", *_pruned(prune), ")", "-prune", "-o", *CHANGED])
    walk = f'{skip} -type d ${{M:+-newer}} ${{M:+"$M"}} -exec sh -c "$D" sh {{}} +'
    walk += f' -o {" ".join(CHANGED)} -exec sh -c "$C" sh {{}} +'
    return _POLL.format(
        root=q(root),
        interval=q(f"{interval:g}"),
        gap=POLL_GAP_SECONDS,
        every=POLL_FULL_EVERY,
        full=full,
        walk=walk,
        fmt=q(STAT_FORMAT),
        dirs=q(dirs),
        other=q(other),
    )


#: The loop. ``cat`` watches stdin (its end stops the loop); the TERM trap ends the ``sleep``
#: and the ``cat``, waits for them and removes the marker, so nothing is left in the
#: container (a KILLed loop leaves its empty marker in the temporary folder).
_POLL = r"""
exec 3<&0
cat <&3 >/dev/null 3<&- &
w=$!
exec 3<&-
n=
M=$(mktemp 2>/dev/null) || M=
trap 'kill $w $n 2>/dev/null; wait; rm -f $M; exit 0' TERM INT HUP
export F={fmt} D={dirs} C={other}
echo =UP
prev=/; last=; k=0
while kill -0 $w 2>/dev/null; do
  cd -- {root} 2>/dev/null || {{ echo =NOROOT; kill $w; wait; rm -f $M; exit 0; }}
  now=$(date +%s)
  if [ -z "$last" ] || [ $((now - last)) -ge {gap} ] || [ $k -ge {every} ]; then
    echo =BEGIN; find . {full} 2>/dev/null; s=$?; prev=/; k=0
    if [ $s -le 1 ]; then echo =END; else echo; echo =CUT; k={every}; fi
  else
    [ -z "$M" ] || touch -d "@$((last - 1))" "$M" 2>/dev/null || {{ rm -f "$M"; M=; }}
    cur=$(find . {walk} 2>/dev/null); s=$?; k=$((k + 1))
    if [ $s -gt 1 ]; then echo =CUT; prev=/; k={every}
    elif [ "$cur" != "$prev" ]; then
      echo =PART; [ -n "$cur" ] && printf '%s\n' "$cur"; echo =END; prev=$cur
    else echo =T; fi
  fi
  last=$now
  sleep {interval} & n=$!; wait $n; n=
done
kill $w 2>/dev/null; wait; rm -f $M
"""


def cd_root(root: str) -> str:
    """Script line entering the root, or saying ``=NOROOT`` (the engine halts) and ending."""
    return f"cd -- {q(root)} 2>/dev/null || {{ echo =NOROOT; exit 0; }}\n"


#: ``sh -c SCAN sh ROOT FIND-ARGS...``: "=OK", records and ``=DONE STATUS`` (find's exit
#: status), or "=NOROOT". A listing without its ``=DONE`` line was cut short.
SCAN = (
    'cd -- "$1" 2>/dev/null || { echo =NOROOT; exit 0; }; shift; echo =OK; find "$@";'
    ' echo "=DONE $?"'
)

#: Highest ``find`` exit status of a complete walk: 1 also means "a path vanished while it
#: was listed" (busybox and GNU), which a live tree does; more is a failure.
FIND_OK_STATUS = 1


def scan_argv(root: str, starts: Sequence[str], prune: Sequence[str]) -> list[str]:
    """One exec listing the whole tree (``starts`` empty) or the given subtrees."""
    top = not starts
    expr = listing_expression(prune, top=top, links=True)
    return ["sh", "-c", SCAN, "sh", root, *([dot(s) for s in starts] or ["."]), *expr]


def argv_size(words: Sequence[str]) -> int:
    return sum(len(w.encode("utf-8", "surrogateescape")) + 1 for w in words)


def chunked(words: Sequence[str], budget: int = ARGV_BUDGET) -> list[list[str]]:
    """Split ``words`` into runs whose argv size stays within ``budget``."""
    runs: list[list[str]] = [[]]
    size = 0
    for word in words:
        n = len(word.encode("utf-8", "surrogateescape")) + 1
        if runs[-1] and size + n > budget:
            runs.append([])
            size = 0
        runs[-1].append(word)
        size += n
    return [run for run in runs if run]


def piped_script(script: str) -> tuple[list[str], bytes]:
    """argv and stdin running ``script`` of any length: ``head -c`` reads exactly its bytes,
    so nothing waits for an end of input some exec protocols cannot send."""
    data = script.encode("utf-8", "surrogateescape")
    return ["sh", "-c", f"head -c {len(data)} | sh"], data


def listing_lines(paths: Sequence[str]) -> str:
    """Script lines printing the record of each path itself (no descent), links included."""
    lines = []
    expr = " ".join(q(w) for w in record_actions(links=True))
    for run in chunked([q(dot(p)) for p in paths]):
        lines.append(f"find {' '.join(run)} -prune {expr} 2>/dev/null")
    return "\n".join(lines) + "\n"


# -- identity -------------------------------------------------------------------------------

#: Run in the sync root after ``cd``: prints ``=FSID <host>/<id>/<ino>``, the Python
#: agent's identity of this root (podsync.agent.identity: same folder of ids, same key, the
#: sha256 of the real path, so either agent recognises the other's record). Prints nothing when
#: the id cannot be kept (no sha256sum, a folder that is not ours or a link); never fails.
FSID = r"""
b=/tmp/.podsync/ids; r=$(pwd -P) || exit 0
(umask 077; mkdir -p "$b") 2>/dev/null
[ -d "$b" ] && [ ! -L "$b" ] && [ -O "$b" ] || exit 0
k=$(printf '%s' "$r" | sha256sum 2>/dev/null) && k=${k%% *} && [ ${#k} -eq 64 ] || exit 0
f="$b/$k"; i=
if [ ! -e "$f" ] && [ ! -L "$f" ]; then
  n=$(head -c 16 /dev/urandom | sha256sum) && n=$(printf %.32s "$n") && t="$f.$$.tmp" &&
  (umask 077; set -C; printf '%s\n' "$n" >"$t") 2>/dev/null &&
  { ln "$t" "$f" 2>/dev/null; rm -f "$t"; }
fi
[ -f "$f" ] && [ ! -L "$f" ] && read -r i <"$f"
case $i in *[!0-9a-f]*|'') exit 0;; esac
[ ${#i} -eq 32 ] || exit 0
h=$(uname -n 2>/dev/null || cat /proc/sys/kernel/hostname)
d=$(stat -c %i .) && echo "=FSID $h/$i/$d"
"""


def parse_fsid(out: bytes) -> str | None:
    """The identity printed by :data:`FSID`, None when there is none or it looks wrong."""
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith("=FSID "):
            value = line[6:]
            parts = value.split("/")
            if 0 < len(value) <= 200 and len(parts) == 3 and all(parts):
                return value
    return None

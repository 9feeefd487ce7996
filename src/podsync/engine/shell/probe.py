"""Probing a container for the shell agent's tools.

Owns: :func:`probe` and :class:`ShellCapabilities`. May import: the standard library,
``podsync.errors``, ``podsync.transport.base``.

One exec answers everything: which tools are missing (``command -v``), whether ``stat -c``
and ``find -exec {} +`` behave, and whether ``sleep`` takes fractions. A container without
``sh`` or ``tar`` gets one line naming what is missing and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from podsync.errors import AgentError
from podsync.transport.base import Transport

_PROBE = r"""
for t in tar find stat mkdir rm mv cat readlink head xargs ln chmod sleep kill sha256sum; do
  command -v "$t" >/dev/null 2>&1 || echo "missing $t"; done
case $(stat -c '%f %s %Y %y %n//' . 2>/dev/null) in *' .//') echo stat-ok;; esac
echo "mtime $(stat -c %y . 2>/dev/null)"
[ "$(find / -maxdepth 0 -exec echo x {} + 2>/dev/null)" = "x /" ] && echo find-ok
sleep 0.01 2>/dev/null && echo fractional-sleep
[ "$(printf '3\nabcdef' | { read -r n; dd bs="$n" count=1 iflag=fullblock 2>/dev/null; })" = abc ] \
  && echo dd-fullblock
echo probe-done
"""
_REQUIRED = (
    "tar",
    "find",
    "stat",
    "mkdir",
    "rm",
    "mv",
    "cat",
    "readlink",
    "head",
    "xargs",
    "ln",
    "chmod",
    "sleep",
    "kill",
)


@dataclass(frozen=True)
class ShellCapabilities:
    """What the container's shell tools can do."""

    sha256sum: bool
    fractional_sleep: bool
    #: ``dd bs=N count=1 iflag=fullblock`` reads exactly N bytes from a pipe (busybox's
    #: ``head -c`` reads ahead): uploads are then framed and never need an end of input.
    exact_reads: bool = False
    #: Digits of fraction ``stat -c %y`` prints (9 in busybox and GNU coreutils; 0: whole
    #: seconds). Expectations sent back are written with as many.
    mtime_digits: int = 0


#: ``stat -c %y``: date, time with an optional fraction, zone.
_STAT_Y = re.compile(r"mtime [^ /]{1,16} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,9}))? [^ /]{1,16}")


async def probe(transport: Transport) -> ShellCapabilities:
    """Check the tools the shell agent needs; AgentError (one line) naming what is missing."""
    result = await transport.run(["sh", "-c", _PROBE], timeout=60)
    out = result.stdout.decode("utf-8", "replace").split("\n")
    where = transport.description
    if "probe-done" not in out:
        raise AgentError(
            f"{where}: the container has no usable /bin/sh; podsync needs python3 >= 3.9, or sh"
            " and tar, in the container: use an image that has them (e.g. one based on busybox,"
            " alpine or debian)"
        )
    missing = [line.split(" ", 1)[1] for line in out if line.startswith("missing ")]
    absent = [t for t in _REQUIRED if t in missing]
    if "tar" in absent:
        raise AgentError(
            f"{where}: the container has neither python3 >= 3.9 nor tar; install tar in the image"
            " (apk add tar / apt-get install tar / busybox tar) or python3"
        )
    if absent:
        raise AgentError(
            f"{where}: the container lacks {', '.join(absent)} (needed without python3 >= 3.9);"
            " install busybox or coreutils/findutils in the image, or python3"
        )
    stat_y = next((m for m in map(_STAT_Y.fullmatch, out) if m), None)
    if "stat-ok" not in out or "find-ok" not in out or stat_y is None:
        raise AgentError(
            f"{where}: the container's stat/find do not support `stat -c` (with %y) or"
            " `find -exec {} +`; install busybox or coreutils/findutils in the image, or python3"
        )
    return ShellCapabilities(
        "sha256sum" not in missing,
        "fractional-sleep" in out,
        "dd-fullblock" in out,
        len(stat_y[1] or ""),
    )

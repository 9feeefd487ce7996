"""Probe a target and install/start the agent there.

Owns: the one-exec probe (python3 version, sh, tar, whether this agent version is already
installed), the install over the exec channel, and the agent command line.
May import: the standard library, ``podsync.transport``, ``podsync.errors``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from podsync.bootstrap.zipapp import agent_bundle
from podsync.errors import AgentError, TransportError
from podsync.transport.base import Transport

AGENT_DIR = "/tmp/.podsync"
MIN_PYTHON = (3, 9)

_PROBE = r"""
p=$(command -v python3 2>/dev/null)
if [ -n "$p" ]; then
  v=$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
  echo "python3=$v"
fi
command -v tar >/dev/null 2>&1 && echo tar=1
[ -f "$1" ] && echo installed=1
echo sh=1
"""


@dataclass(frozen=True)
class Probe:
    python: tuple[int, int] | None
    has_tar: bool
    installed: bool

    @property
    def python_ok(self) -> bool:
        return self.python is not None and self.python >= MIN_PYTHON


def agent_path() -> str:
    _, digest = agent_bundle()
    return f"{AGENT_DIR}/agent-{digest}.pyz"


async def probe(transport: Transport) -> Probe:
    """One exec telling what the target has."""
    try:
        result = await transport.run(["sh", "-c", _PROBE, "probe", agent_path()], timeout=30)
    except TransportError:
        raise
    out = result.stdout.decode("utf-8", "replace")
    if "sh=1" not in out:
        detail = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
        raise AgentError(
            f"{transport.description}: cannot run /bin/sh in the container"
            f" ({detail[:200] or 'exit ' + str(result.exit_code)}); podsync needs sh and tar"
            " (or python3 >= 3.9) in the container"
        )
    python: tuple[int, int] | None = None
    for line in out.splitlines():
        if line.startswith("python3="):
            try:
                major, minor = line.split("=", 1)[1].split(".")[:2]
                python = (int(major), int(minor))
            except ValueError:
                python = None
    return Probe(python, "tar=1" in out, "installed=1" in out)


async def install_agent(transport: Transport) -> str:
    """Copy the agent bundle into the target unless this exact version is there; its path."""
    payload, _ = agent_bundle()
    path = agent_path()
    script = (
        f"mkdir -p {AGENT_DIR} && cat > {shlex.quote(path)}.$$ && "
        f"mv -f {shlex.quote(path)}.$$ {shlex.quote(path)}"
    )
    result = await transport.run(["sh", "-c", script], stdin=payload, timeout=60)
    if result.exit_code != 0:
        detail = result.stderr.decode("utf-8", "replace").strip()
        raise AgentError(
            f"{transport.description}: cannot install the agent into {AGENT_DIR}: {detail[:200]}"
        )
    return path


def agent_command(path: str, root: str) -> list[str]:
    """The agent's command line. ``-X utf8``: file names are bytes, and the agent must decode
    them as UTF-8 with surrogate escapes whatever the container's locale (under a Latin-1 or
    ASCII locale the same name would reach podsync as other text)."""
    return ["python3", "-X", "utf8", path, "serve", root]


#: Starts the installed agent at once when this exact version is there and python3 runs it;
#: otherwise says so in one line. Saves the probe's exec on every connection but the first.
_LAUNCH = (
    'p=$1; shift; if [ -f "$p" ] && command -v python3 >/dev/null 2>&1; then '
    'exec python3 -X utf8 "$p" serve "$@"; fi; echo "podsync: agent not installed"'
)


def launch_command(root: str) -> list[str]:
    """``sh`` starting the installed agent for ``root`` ("." = the exec's working directory,
    which runtimes set to the container's WORKDIR)."""
    return ["sh", "-c", _LAUNCH, "launch", agent_path(), root]

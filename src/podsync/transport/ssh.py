"""Commands on a remote host over OpenSSH (``--ssh [user@]host`` or ``ssh://[user@]host[:port]``).

Owns: :class:`SshTransport`, :func:`parse_destination` and :func:`ssh_command`. May import: the
standard library, ``podsync.errors`` and ``podsync.transport``.

Authentication and host keys are the user's ssh configuration (``~/.ssh/config``, the agent,
``known_hosts``); podsync never weakens host-key checking. It adds ``BatchMode=yes`` (ssh never
prompts: podsync owns the terminal) and keepalives (a host that stops answering ends the
connection within ~25 s and the sync reconnects, instead of a stream stalled for good). Two ways
to reach what a plain ``ssh HOST`` cannot:

- ``--ssh ssh://[user@]host[:port]``: the URL form OpenSSH itself accepts (IPv6 in brackets);
  the port is passed with ``-p``.
- ``PODSYNC_SSH_COMMAND`` (as git's ``GIT_SSH_COMMAND``): the ssh command line to run instead of
  ``ssh``, split into words as a shell would (quotes honoured, nothing expanded), e.g.
  ``ssh -F ~/work/ssh_config -i ~/.ssh/deploy``. It must start with the ssh program; podsync's
  own options follow it, so the user's ``-o`` options win (ssh keeps an option's first value).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from podsync.errors import TransportError, UsageError
from podsync.transport.wrapped import WrappedExecTransport, last_line

#: ssh's own failures (cannot connect, authentication refused) exit with this code.
SSH_FAILURE_EXIT = 255
#: The environment variable holding the ssh command line (default: ``ssh``).
SSH_COMMAND_ENV = "PODSYNC_SSH_COMMAND"
#: A server silent this long (keepalives unanswered: frozen host, dead link without a reset)
#: makes ssh exit, so the sync reconnects instead of waiting forever on a stalled stream.
SERVER_ALIVE_INTERVAL_SECONDS = 5
SERVER_ALIVE_COUNT = 4
URL_SCHEME = "ssh://"
MAX_PORT = 65535


@dataclass(frozen=True)
class Destination:
    """Where ssh connects: ``target`` (``[user@]host``, what ssh gets) and an explicit port."""

    target: str
    port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return self.target
        user, at, host = self.target.rpartition("@")
        host = f"[{host}]" if ":" in host else host
        return f"{user}{at}{host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """``[user@]host`` (unchanged) or ``ssh://[user@]host[:port][/]``; UsageError naming --ssh."""
    if not text.lower().startswith(URL_SCHEME):
        return Destination(text)
    try:
        return _parse_url(text[len(URL_SCHEME) :])
    except ValueError as exc:
        raise UsageError(
            f'--ssh: "{text}" is not a valid ssh://[user@]host[:port] ({exc})'
        ) from None


def _parse_url(rest: str) -> Destination:
    """The part of an ssh:// URL after the scheme; ValueError saying what is wrong."""
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(c in rest for c in "/?#"):
        raise ValueError("no path, query or fragment")
    user, at, hostport = rest.rpartition("@")
    if at and not user:
        raise ValueError("an empty user name")
    if ":" in user:
        raise ValueError("a user name, without a password")
    if user.startswith("-"):  # ssh would read the destination as an option
        raise ValueError("a user name cannot start with '-'")
    if hostport.startswith("["):  # [ipv6] or [ipv6]:port
        host, close, after = hostport[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise ValueError("an IPv6 address goes in brackets: [::1]:22")
        port_text: str | None = after[1:] if after else None
    elif hostport.count(":") > 1:
        raise ValueError("an IPv6 address goes in brackets: [::1]:22")
    else:
        host, colon, after = hostport.partition(":")
        port_text = after if colon else None
    if not host or host.startswith("-"):
        raise ValueError("no host name")
    if port_text is None:
        return Destination(f"{user}{at}{host}")
    if not port_text.isdigit() or not 0 < int(port_text) <= MAX_PORT:
        raise ValueError(f"port {port_text!r} is not a number from 1 to {MAX_PORT}")
    return Destination(f"{user}{at}{host}", int(port_text))


def ssh_command() -> list[str]:
    """The ssh client's command line: ``$PODSYNC_SSH_COMMAND`` split into words, or ``ssh``."""
    raw = os.environ.get(SSH_COMMAND_ENV, "")
    try:
        words = shlex.split(raw)
    except ValueError as exc:
        raise UsageError(f"{SSH_COMMAND_ENV}={raw!r}: {exc}") from None
    return words or ["ssh"]


class SshTransport(WrappedExecTransport):
    """Runs commands on ``host`` with ``ssh -T``; the link speed is unknown (compress).

    ``host`` is what ``--ssh`` got; ``ssh`` the client's command line (default: from
    ``PODSYNC_SSH_COMMAND``, else ``ssh``).
    """

    def __init__(self, host: str, ssh: str | Sequence[str] | None = None) -> None:
        super().__init__()
        self.host = host
        self.destination = parse_destination(host)
        if ssh is None:
            self.command = ssh_command()
            from_env = SSH_COMMAND_ENV in os.environ and self.command != ["ssh"]
        else:
            self.command = [ssh] if isinstance(ssh, str) else list(ssh)
            from_env = False
        self.ssh = self.command[0]
        self.description = f"ssh:{self.destination}"
        self.link_bytes_per_second: float | None = None
        self.missing = (
            f"{SSH_COMMAND_ENV}: no `{self.ssh}` command on PATH"
            if from_env
            else f"ssh is not installed (no `{self.ssh}` command on PATH)"
        )

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        # The remote side joins its arguments and hands them to the login shell: quote once.
        port = [] if self.destination.port is None else ["-p", str(self.destination.port)]
        return [
            *self.command,
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            f"ServerAliveInterval={SERVER_ALIVE_INTERVAL_SECONDS}",
            "-o",
            f"ServerAliveCountMax={SERVER_ALIVE_COUNT}",
            *port,
            self.destination.target,
            "--",
            shlex.join(argv),
        ]

    def classify(self, stderr: str, exit_code: int) -> TransportError | None:
        if exit_code != SSH_FAILURE_EXIT:
            return None
        said = last_line(stderr, "ssh failed")
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "has changed and" in stderr:
            said = (
                "host key verification failed: the host's key differs from the one in"
                f" known_hosts (podsync never accepts it; {self._hint()} tells more)"
            )
        elif "host key is known for" in stderr:
            said = (
                "host key verification failed: the host's key is not in known_hosts"
                f" (run {self._hint()} once to check it and accept it)"
            )
        return TransportError(f"cannot reach {self.destination} over ssh: {said}")

    def _hint(self) -> str:
        """The plain ssh command a user runs once to see and accept the host key."""
        port = [] if self.destination.port is None else ["-p", str(self.destination.port)]
        return f"`{shlex.join([*self.command, *port, self.destination.target])}`"

    def shell_missing(self, stderr: str, exit_code: int) -> bool:
        return False  # sshd always runs the command through the login shell

    async def workdir(self) -> str:
        """The remote login directory."""
        result = await self.run(["pwd"])
        if result.exit_code != 0:
            text = result.stderr.decode("utf-8", "replace")
            raise TransportError(f"{self.description}: pwd failed: {last_line(text, 'no output')}")
        return result.stdout.decode("utf-8", "replace").strip() or "/"

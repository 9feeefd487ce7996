"""Commands on a remote host over OpenSSH (``--ssh [user@]host``).

Owns: :class:`SshTransport`. May import: the standard library, ``podsync.errors`` and
``podsync.transport``. Authentication is the user's ssh configuration; BatchMode keeps ssh
from prompting (podsync owns the terminal).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from podsync.errors import TransportError
from podsync.transport.process import WrappedExecTransport, last_line

#: ssh's own failures (cannot connect, authentication refused) exit with this code.
SSH_FAILURE_EXIT = 255


class SshTransport(WrappedExecTransport):
    """Runs commands on ``host`` with ``ssh -T``; the link speed is unknown (compress)."""

    def __init__(self, host: str, ssh: str = "ssh") -> None:
        super().__init__()
        self.host = host
        self.ssh = ssh
        self.description = f"ssh:{host}"
        self.link_bytes_per_second: float | None = None
        self.missing = f"ssh is not installed (no `{ssh}` command on PATH)"

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        # The remote side joins its arguments and hands them to the login shell: quote once.
        return [
            self.ssh,
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            self.host,
            "--",
            shlex.join(argv),
        ]

    def classify(self, stderr: str, exit_code: int) -> TransportError | None:
        if exit_code == SSH_FAILURE_EXIT:
            return TransportError(
                f"cannot reach {self.host} over ssh: {last_line(stderr, 'ssh failed')}"
            )
        return None

    def shell_missing(self, stderr: str, exit_code: int) -> bool:
        return False  # sshd always runs the command through the login shell

    async def workdir(self) -> str:
        """The remote login directory."""
        result = await self.run(["pwd"])
        if result.exit_code != 0:
            text = result.stderr.decode("utf-8", "replace")
            raise TransportError(f"{self.description}: pwd failed: {last_line(text, 'no output')}")
        return result.stdout.decode("utf-8", "replace").strip() or "/"

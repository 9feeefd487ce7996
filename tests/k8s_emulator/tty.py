"""``exec`` with ``tty=true``: ``docker exec -t`` on a pseudo-terminal owned by the emulator.

Owns: :class:`PtyExec` (the docker CLI started on a pty slave; the master read and written as
asyncio streams; resizes applied with TIOCSWINSZ, which the CLI forwards to the container).
May import: the standard library.

With a TTY the API server sends everything on channel 1 (no separate stderr) and reads
terminal sizes as ``{"Width": w, "Height": h}`` JSON on channel 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import struct
import termios

READ_LIMIT = 1 << 20


class PtyExec:
    """``docker exec [-i] -t CONTAINER ARGV`` attached to a fresh pseudo-terminal."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.stdout = asyncio.StreamReader(limit=READ_LIMIT)
        self.stdin: asyncio.StreamWriter | None = None

    @classmethod
    async def start(cls, container: str, command: list[str], want_stdin: bool) -> PtyExec:
        master, slave = pty.openpty()
        _set_size(master, 80, 24)
        flags = ["-i", "-t"] if want_stdin else ["-t"]
        proc = await asyncio.create_subprocess_exec(
            "docker", "exec", *flags, container, *command,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self = cls(proc, master)
        loop = asyncio.get_running_loop()
        reader_proto = asyncio.StreamReaderProtocol(self.stdout)
        await loop.connect_read_pipe(lambda: reader_proto, os.fdopen(master, "rb", buffering=0))
        out = os.fdopen(os.dup(master), "wb", buffering=0)
        transport, proto = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
        self.stdin = asyncio.StreamWriter(transport, proto, None, loop)
        return self

    async def read(self, n: int) -> bytes:
        """Terminal output; ``b""`` once the slave side is gone (Linux reports EIO)."""
        try:
            return await self.stdout.read(n)
        except OSError:
            return b""

    def resize(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            size = json.loads(payload)
            _set_size(self.master, int(size["Width"]), int(size["Height"]))


def _set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

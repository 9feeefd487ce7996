"""A throwaway OpenSSH server on 127.0.0.1 for end-to-end tests.

Owns: :class:`SshKeys` (key pairs made for one test session), :class:`Sshd` (Debian's
``/usr/sbin/sshd -D`` as a child of the test process, on its own free loopback ports, with its
own config, host key, authorized_keys and log) and :func:`require_sshd` (skip, or fail under
PODSYNC_REQUIRE_SSH=1). May import: the standard library and ``tests.support.wait``.

Nothing is written to ``~/.ssh`` or ``/etc/ssh``: the client side uses a config file of ours
(``ssh -F``, which also keeps ssh from creating ``~/.ssh``) with our known_hosts, strict
host-key checking and BatchMode. The one path outside the test folder is ``/run/sshd``, the
empty privilege-separation directory sshd insists on when run as root; it is created if
missing, as the Debian service would.

The server listens on two ports, one per kind of remote host (``Match LocalPort``):

- ``python``: a host whose PATH has ``python3`` (a link to the interpreter running the tests);
- ``shell``: a host whose PATH has every command of the system but no ``python*``, so podsync's
  probe finds no python3 and picks the shell agent on its own.

Both set HOME to a folder of ours, so the login shell reads no rc file of this machine.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.wait import wait_until

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
FLAVOURS = ("python", "shell")
#: The system's command folders (merged /usr or not); /usr/local first, as sshd's default.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
START_SECONDS = 20.0
REQUIRE_ENV = "PODSYNC_REQUIRE_SSH"


def sshd_unavailable_reason() -> str | None:
    """Why a test sshd cannot run here (one line), or None."""
    if not SSHD.is_file():
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install openssh-client)"
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create sshd's privilege separation directory {PRIVSEP_DIR}: {exc}"
    return None


def require_sshd() -> None:
    """Skip the test when sshd cannot run; fail instead under PODSYNC_REQUIRE_SSH=1 (CI)."""
    import pytest

    reason = sshd_unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"OpenSSH is required ({REQUIRE_ENV}=1) but {reason}", False)
    pytest.skip(f"OpenSSH server not available: {reason}")


def _keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return path


@dataclass(frozen=True)
class SshKeys:
    """The session's key pairs: the server's host key, a client key the server accepts, one
    it refuses, and a host key nobody serves (for a known_hosts that no longer matches)."""

    host: Path
    client: Path
    refused: Path
    other_host: Path

    @classmethod
    def create(cls, folder: Path) -> SshKeys:
        folder.mkdir(parents=True, exist_ok=True)
        return cls(
            host=_keygen(folder / "host_ed25519", "podsync-test-host"),
            client=_keygen(folder / "client_ed25519", "podsync-test-client"),
            refused=_keygen(folder / "refused_ed25519", "podsync-test-refused"),
            other_host=_keygen(folder / "other_host_ed25519", "podsync-test-other-host"),
        )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) for every process in /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), comm)
    return table


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (children, their children...): pid -> command name."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found[child] = table[child][1]
        todo.extend(children.get(child, []))
    return found


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]


def processes_mentioning(text: str) -> list[str]:
    """``pid: command line`` of every process whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def user_ssh_dir_state() -> list[tuple[str, int, int]]:
    """(name, size, mtime) of everything in the real ``~/.ssh`` (ssh takes ``~`` from the
    password database, not from $HOME); empty when there is none."""
    import pwd

    folder = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"
    if not folder.exists():
        return []
    found = [(".", 0, folder.stat().st_mtime_ns)]
    for entry in sorted(folder.rglob("*")):
        info = entry.lstat()
        found.append((str(entry.relative_to(folder)), info.st_size, info.st_mtime_ns))
    return found


class Sshd:
    """One sshd listening on 127.0.0.1 only (two ports: ``python`` and ``shell`` hosts)."""

    def __init__(self, keys: SshKeys, folder: Path) -> None:
        self.keys = keys
        self.folder = folder
        self.user = getpass.getuser()
        self.log = folder / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports = {flavour: 0 for flavour in FLAVOURS}
        #: Commands left running by :meth:`crash`; ended by :meth:`stop` at the latest.
        self.orphans: list[int] = []
        self.frozen: list[int] = []
        folder.mkdir(parents=True, exist_ok=True)
        self._make_hosts()

    # -- files ------------------------------------------------------------------------------
    def _make_hosts(self) -> None:
        """Each flavour's PATH folder and HOME."""
        py_bin = self.folder / "bin-python"
        py_bin.mkdir(exist_ok=True)
        link = py_bin / "python3"
        if not link.exists():
            link.symlink_to(os.path.realpath(sys.executable))
        shell_bin = self.folder / "bin-shell"
        shell_bin.mkdir(exist_ok=True)
        for folder in SYSTEM_PATH:
            if not Path(folder).is_dir():
                continue
            for tool in Path(folder).iterdir():
                target = shell_bin / tool.name
                if tool.name.startswith("python") or target.exists() or target.is_symlink():
                    continue
                if tool.is_file() and os.access(tool, os.X_OK):
                    target.symlink_to(tool)
        self.paths = {
            "python": ":".join((str(py_bin), *SYSTEM_PATH)),
            "shell": str(shell_bin),
        }
        self.homes = {flavour: self.folder / f"home-{flavour}" for flavour in FLAVOURS}
        for home in self.homes.values():
            home.mkdir(exist_ok=True)
        (self.folder / "authorized_keys").write_text(
            Path(f"{self.keys.client}.pub").read_text(), encoding="utf-8"
        )

    def _write_config(self) -> Path:
        lines = [f"ListenAddress 127.0.0.1:{port}" for port in self.ports.values()]
        lines += [
            f"HostKey {self.keys.host}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "StrictModes no",  # our files live under /tmp, which is world-writable
            "PidFile none",
            "LogLevel VERBOSE",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
        ]
        for flavour, port in self.ports.items():
            env = f"PATH={self.paths[flavour]} HOME={self.homes[flavour]}"
            lines += [f"Match LocalPort {port}", f"  SetEnv {env}"]
        config = self.folder / "sshd_config"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def known_hosts(self, key: Path | None = None, name: str = "known_hosts") -> Path:
        """A known_hosts file naming ``key`` (default: the real host key) for every port."""
        public = Path(f"{key or self.keys.host}.pub").read_text(encoding="utf-8").split()
        path = self.folder / name
        path.write_text(
            "".join(f"[127.0.0.1]:{p} {public[0]} {public[1]}\n" for p in self.ports.values()),
            encoding="utf-8",
        )
        return path

    def client_config(
        self, name: str = "ssh_config", *, identity: Path | None = None, known: Path | None = None
    ) -> Path:
        """An ssh client config: our key, our known_hosts, strict checking, BatchMode."""
        known = known or self.known_hosts()
        options = {
            "IdentityFile": identity or self.keys.client,
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "UserKnownHostsFile": known,
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "UpdateHostKeys": "no",
            "CheckHostIP": "no",
            "BatchMode": "yes",
            "ControlMaster": "no",
            "ControlPath": "none",
        }
        path = self.folder / name
        path.write_text(
            "Host *\n" + "".join(f"  {k} {v}\n" for k, v in options.items()), encoding="utf-8"
        )
        return path

    def ssh_command(self, config: Path) -> str:
        """The PODSYNC_SSH_COMMAND value using ``config``."""
        return shlex.join(["ssh", "-F", str(config)])

    def url(self, flavour: str) -> str:
        """The ``--ssh`` value for the ``python`` or ``shell`` host."""
        return f"ssh://{self.user}@127.0.0.1:{self.ports[flavour]}"

    # -- process ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start sshd (new ports the first time, the same ones on a restart); wait until it
        listens on every port."""
        fresh = not any(self.ports.values())
        for attempt in range(3):
            if fresh:
                self.ports = {flavour: free_port() for flavour in FLAVOURS}
            if self._start_once():
                return
            if not fresh or attempt == 2:
                break
        raise RuntimeError(f"sshd did not start; its log:\n{self.log_text()[-4000:]}")

    def _start_once(self) -> bool:
        config = self._write_config()
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [str(SSHD), "-D", "-f", str(config), "-E", str(self.log)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
        wanted = [f"Server listening on 127.0.0.1 port {p}." for p in self.ports.values()]

        def ready() -> bool:
            text = self.log_text(offset)
            return (
                all(w in text for w in wanted) or self.proc is None or self.proc.poll() is not None
            )

        wait_until(ready, START_SECONDS, interval=0.02, message="sshd never listened")
        text = self.log_text(offset)
        if all(w in text for w in wanted) and self.proc.poll() is None:
            return True
        self._kill_tree()
        return False

    def log_text(self, offset: int = 0) -> str:
        """sshd's log from byte ``offset`` on (sshd ends its lines with CR LF)."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace").replace("\r\n", "\n")

    def crash(self) -> list[int]:
        """The server dies at once, as in a crash: sshd's listener and every sshd session
        process get SIGKILL, so every connection drops. The commands those sessions ran are
        left alone (their pids are returned): they see their pipes close."""
        left = self._kill_tree(commands=False)
        self.orphans += left
        return left

    def commands_mentioning(self, text: str) -> list[str]:
        """The processes sshd runs for its clients (not sshd itself) whose command line
        contains ``text``."""
        if self.proc is None:
            return []
        pids = {pid for pid, name in descendants(self.proc.pid).items() if name != "sshd"}
        return [line for line in processes_mentioning(text) if int(line.split(":")[0]) in pids]

    def freeze_sessions(self) -> list[int]:
        """Every open connection hangs (its sshd processes get SIGSTOP; TCP stays up, nothing
        answers), as with a frozen host or a link that died without a reset. The listener
        still accepts new connections. Returns what :meth:`thaw` takes."""
        assert self.proc is not None
        frozen = [pid for pid, name in descendants(self.proc.pid).items() if name == "sshd"]
        for pid in frozen:
            _signal(pid, signal.SIGSTOP)
        self.frozen += frozen
        return frozen

    def thaw(self) -> None:
        """SIGCONT whatever :meth:`freeze_sessions` stopped."""
        for pid in self.frozen:
            _signal(pid, signal.SIGCONT)
        self.frozen = []

    def stop(self) -> None:
        """End the server, its sessions and whatever they still run (also after a crash)."""
        self.thaw()
        self._kill_tree(commands=True)
        for pid in self.orphans:
            _signal(pid, signal.SIGKILL)
        self.orphans = []

    def _kill_tree(self, *, commands: bool = True) -> list[int]:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return []
        # Frozen first: no new session can be forked while the tree is collected.
        os.kill(proc.pid, signal.SIGSTOP)
        wait_until(lambda: _state(proc.pid) in ("T", "t", "Z", "gone"), 10, interval=0.005)
        tree = descendants(proc.pid)
        left = []
        for pid, name in tree.items():
            if name == "sshd" or commands:
                _signal(pid, signal.SIGKILL)
            else:
                left.append(pid)
        proc.kill()
        proc.wait(timeout=10)
        return left

    def __enter__(self) -> Sshd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive (not zombies) after waiting up to ``timeout`` s for them to end."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if _state(p) not in ("Z", "X", "gone")]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)

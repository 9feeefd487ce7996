"""`podsync sync --ssh` end to end against a real OpenSSH server (Debian's sshd) on 127.0.0.1.

The server is started by the tests (tests/support/sshd.py): throwaway keys, its own ports, its
own config, strict host-key checking and BatchMode on the client side. "Over there" is a folder
on this machine reached through sshd, so the far side's files are checked directly. Two remote
hosts: one whose PATH has python3 (python agent), one whose PATH has no python3 (the probe picks
the shell agent by itself). Skipped when sshd is missing, failed under PODSYNC_REQUIRE_SSH=1.
Every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.e2e.harness import LocalFar, SyncProcess, read_local
from tests.support.sshd import (
    Sshd,
    SshKeys,
    processes_mentioning,
    require_sshd,
    user_ssh_dir_state,
    wait_gone,
)
from tests.support.wait import wait_until

from podsync.transport.ssh import SSH_COMMAND_ENV

MIB = 1 << 20


@dataclass
class SshHost:
    """One remote host: its kind of agent, the podsync flags that reach it, its folder."""

    agent: str
    url: str
    far: LocalFar

    @property
    def args(self) -> list[str]:
        return ["--ssh", self.url, "--container-path", self.far.root]


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> SshKeys:
    require_sshd()
    return SshKeys.create(tmp_path_factory.mktemp("ssh-keys"))


@pytest.fixture(scope="session")
def sshd(ssh_keys: SshKeys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """The session's server (tests that kill a server start their own). At the end, the
    real ~/.ssh is as it was: every test used its own config, keys and known_hosts."""
    before = user_ssh_dir_state()
    with Sshd(ssh_keys, tmp_path_factory.mktemp("sshd")) as server:
        yield server
    assert user_ssh_dir_state() == before, "the tests changed the real ~/.ssh"


@pytest.fixture
def own_sshd(ssh_keys: SshKeys, tmp_path: Path) -> Iterator[Sshd]:
    """A server for this test alone (it gets killed and restarted)."""
    with Sshd(ssh_keys, tmp_path / "sshd") as server:
        yield server


def _host(server: Sshd, agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SshHost:
    far = tmp_path / "far"
    far.mkdir()
    # podsync (a child of this process) inherits it: ssh -F our config, never ~/.ssh.
    monkeypatch.setenv(SSH_COMMAND_ENV, server.ssh_command(server.client_config()))
    return SshHost(agent, server.url(agent), LocalFar(str(far)))


@pytest.fixture(params=["python", "shell"])
def host(
    request: pytest.FixtureRequest, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SshHost:
    return _host(sshd, request.param, tmp_path, monkeypatch)


def start(host: SshHost, workdir: Path, running: list[SyncProcess], *extra: str) -> SyncProcess:
    proc = SyncProcess(["--local-path", str(workdir), *host.args, *extra], cwd=workdir)
    running.append(proc)
    return proc


def assert_agent(proc: SyncProcess, host: SshHost) -> None:
    """The engine picked the agent this host calls for, by itself."""
    connected = [line for line in proc.lines if "connected:" in line]
    assert connected, proc.output
    assert f"({host.agent} agent (" in connected[0], connected[0]


def no_traceback(output: str) -> None:
    assert "Traceback" not in output, output


# -- initial sync ---------------------------------------------------------------------------
def test_initial_sync_over_ssh(host: SshHost, workdir: Path, running: list[SyncProcess]) -> None:
    (workdir / "src").mkdir()
    (workdir / "src" / "app.py").write_text("print('hi')\n")
    (workdir / "big.bin").write_bytes(os.urandom(3 * MIB))
    script = workdir / "run.sh"
    script.write_text("#!/bin/sh\necho ok\n")
    script.chmod(0o755)
    (workdir / "newer.txt").write_text("local and newer")
    host.far.write("newer.txt", b"remote and older")
    os.utime(workdir / "newer.txt", (2_000_000_000, 2_000_000_000))
    host.far.write("older.txt", b"remote and newer")
    (workdir / "older.txt").write_text("local and older!")
    os.utime(workdir / "older.txt", (1_000_000_000, 1_000_000_000))
    host.far.write("remote-only.txt", b"only over there")
    host.far.write("deps/lib.js", b"module.exports = 1\n")

    proc = start(host, workdir, running, "--no-watch", "--download-exclude", "remote-only.txt")
    assert proc.finish() == 0, proc.output
    assert_agent(proc, host)

    assert host.far.read("src/app.py") == b"print('hi')\n"
    assert host.far.read("big.bin") == (workdir / "big.bin").read_bytes()
    assert os.access(Path(host.far.root, "run.sh"), os.X_OK)
    assert host.far.read("newer.txt") == b"local and newer"
    # Both copies of a path newer over there are kept: a conflict, reported.
    assert host.far.read("older.txt") == b"remote and newer"
    assert (workdir / "older.txt").read_text() == "local and older!"
    assert "older.txt" in proc.output and "conflict" in proc.output
    # --download-on-initial-sync is on by default for `podsync sync`.
    assert read_local(workdir, "deps/lib.js") == b"module.exports = 1\n"
    assert host.far.read("remote-only.txt") == b"only over there"  # download-excluded: left
    assert not (workdir / "remote-only.txt").exists()
    assert not [p for p in host.far.listing() if ".podsync-" in p]
    no_traceback(proc.output)


def test_names_the_login_shell_would_expand(
    host: SshHost, workdir: Path, running: list[SyncProcess]
) -> None:
    """sshd hands every command to the remote login shell: names with quotes, ``$``,
    backquotes and ``&`` must arrive as they are, both ways, and not hurt their neighbours."""
    up = "it's a $HOME `id` & file.txt"
    down = "from $PATH `id` 'there'.txt"
    (workdir / up).write_text("up")
    (workdir / "neighbour.txt").write_text("same folder")
    host.far.write(down, b"down")
    proc = start(host, workdir, running, "--no-watch")
    assert proc.finish() == 0, proc.output
    assert "problem:" not in proc.output, proc.output
    assert host.far.read(up) == b"up"
    assert host.far.read("neighbour.txt") == b"same folder"
    assert read_local(workdir, down) == b"down"
    assert host.far.listing() == {up, down, "neighbour.txt"}


# -- watch both ways --------------------------------------------------------------------------
def test_watch_both_ways_over_ssh(host: SshHost, workdir: Path, running: list[SyncProcess]) -> None:
    (workdir / "a.txt").write_text("one")
    proc = start(host, workdir, running)
    proc.wait_watching()
    assert_agent(proc, host)
    assert host.far.read("a.txt") == b"one"

    (workdir / "a.txt").write_text("two")
    wait_until(lambda: host.far.read("a.txt") == b"two", 15, message="local save not uploaded")
    (workdir / "dir" / "sub").mkdir(parents=True)
    (workdir / "dir" / "sub" / "new.txt").write_text("new")
    wait_until(lambda: host.far.read("dir/sub/new.txt") == b"new", 15, message="new folder")

    host.far.write("from-there.txt", b"hello from over there")
    wait_until(
        lambda: read_local(workdir, "from-there.txt") == b"hello from over there",
        15,
        message="remote edit not downloaded",
    )
    host.far.write("a.txt", b"three")
    wait_until(lambda: read_local(workdir, "a.txt") == b"three", 15, message="remote modify")

    (workdir / "a.txt").unlink()
    wait_until(lambda: not host.far.exists("a.txt"), 15, message="local delete not applied")
    host.far.sh(f"rm -rf '{host.far.root}/dir'")
    wait_until(lambda: not (workdir / "dir").exists(), 15, message="remote delete of a folder")
    assert proc.proc.poll() is None, proc.output
    assert proc.stop() == 0, proc.output
    no_traceback(proc.output)


def test_stop_leaves_no_process_over_there(
    host: SshHost, sshd: Sshd, workdir: Path, running: list[SyncProcess]
) -> None:
    """Ending the local ssh client does not end the remote command: podsync must."""
    (workdir / "f.txt").write_text("x")
    proc = start(host, workdir, running)
    proc.wait_watching()
    assert sshd.commands_mentioning(host.far.root), "no remote process found: test is blind"
    assert proc.stop(signal.SIGTERM) == 0, proc.output
    wait_until(
        lambda: not processes_mentioning(host.far.root),
        15,
        message=f"left running: {processes_mentioning(host.far.root)}",
    )
    assert not [p for p in host.far.listing() if ".podsync-" in p]


# -- the server dies during watch ---------------------------------------------------------
@pytest.mark.parametrize("agent", ["python", "shell"])
def test_server_killed_and_restarted_during_watch(
    agent: str,
    own_sshd: Sshd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workdir: Path,
    running: list[SyncProcess],
) -> None:
    host = _host(own_sshd, agent, tmp_path, monkeypatch)
    (workdir / "a.txt").write_text("before")
    proc = start(host, workdir, running)
    proc.wait_watching()
    assert host.far.read("a.txt") == b"before"

    left = own_sshd.crash()  # every sshd process gets SIGKILL: all connections drop
    proc.wait_for_output("connection lost", 30)
    # A reconnect attempt meets the closed port before the server comes back.
    where = f"{own_sshd.user}@127.0.0.1:{own_sshd.ports[agent]}"
    proc.wait_for_output(f"connection lost: cannot reach {where} over ssh: ", 30)
    lost = [line for line in proc.lines if "connection lost" in line]
    for line in lost:  # each attempt: one line saying what happened and what comes next
        assert re.fullmatch(r"\[sync\] connection lost: .+; reconnecting in [\d.]+ s", line), line
    assert "Connection refused" in lost[-1], lost[-1]

    # Changes on both sides while the server is down are not lost.
    (workdir / "a.txt").write_text("edited locally while down")
    (workdir / "new-local.txt").write_text("created locally while down")
    host.far.write("new-remote.txt", b"created over there while down")
    # The remote commands of the dropped connections see their pipes close and end.
    assert wait_gone(left, 15) == [], f"remote processes outlived the connection: {left}"

    own_sshd.start()  # same ports, same host key
    wait_until(
        lambda: (
            host.far.read("a.txt") == b"edited locally while down"
            and host.far.read("new-local.txt") == b"created locally while down"
            and read_local(workdir, "new-remote.txt") == b"created over there while down"
        ),
        60,
        message=f"changes made during the outage never flowed:\n{proc.output}",
    )
    reconnected = [line for line in proc.lines if "connected:" in line]
    assert len(reconnected) >= 2, proc.output

    # And the sync goes on both ways.
    (workdir / "after.txt").write_text("local after restart")
    wait_until(lambda: host.far.read("after.txt") == b"local after restart", 15)
    host.far.write("after-remote.txt", b"remote after restart")
    wait_until(lambda: read_local(workdir, "after-remote.txt") == b"remote after restart", 15)
    assert proc.proc.poll() is None, proc.output
    assert proc.stop() == 0, proc.output
    assert "conflict:" not in proc.output and "problem:" not in proc.output, proc.output
    no_traceback(proc.output)


@pytest.mark.parametrize("agent", ["python", "shell"])
def test_frozen_server_is_noticed_and_the_sync_reconnects(
    agent: str,
    own_sshd: Sshd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workdir: Path,
    running: list[SyncProcess],
) -> None:
    """A connection that stops answering without closing (frozen host, dead link) must not
    stall the sync for good: ssh's keepalives end it and podsync reconnects."""
    host = _host(own_sshd, agent, tmp_path, monkeypatch)
    (workdir / "a.txt").write_text("before")
    proc = start(host, workdir, running)
    proc.wait_watching()
    frozen = own_sshd.freeze_sessions()
    assert frozen, "no open connection to freeze: test is blind"
    proc.wait_for_output("connection lost", 90)
    wait_until(
        lambda: proc.output.count("watching for changes") >= 2,
        60,
        message=f"never reconnected:\n{proc.output}",
    )
    host.far.write("remote-after.txt", b"seen again")
    wait_until(
        lambda: read_local(workdir, "remote-after.txt") == b"seen again",
        30,
        message=f"changes over there are no longer seen:\n{proc.output}",
    )
    own_sshd.thaw()  # the stale sessions wake up, find their client gone and end
    assert wait_gone(frozen, 15) == [], "stale sshd sessions never ended"
    assert proc.stop() == 0, proc.output
    no_traceback(proc.output)


# -- refused key, unknown or changed host key ---------------------------------------------
def _one_line_failure(proc: SyncProcess, running: list[SyncProcess]) -> str:
    """podsync failed with exit 1 and said why in one line; that line."""
    running.append(proc)  # its output is shown if the test fails
    assert proc.finish(60) == 1, proc.output
    no_traceback(proc.output)
    errors = [line for line in proc.lines if line.startswith("podsync:")]
    assert len(errors) == 1, proc.output
    return errors[0]


def test_refused_key_is_one_line(
    sshd: Sshd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workdir: Path,
    running: list[SyncProcess],
) -> None:
    host = _host(sshd, "python", tmp_path, monkeypatch)
    config = sshd.client_config("refused_config", identity=sshd.keys.refused)
    monkeypatch.setenv(SSH_COMMAND_ENV, sshd.ssh_command(config))
    (workdir / "f.txt").write_text("x")
    proc = SyncProcess(["--local-path", str(workdir), *host.args], cwd=workdir)
    line = _one_line_failure(proc, running)
    where = f"{sshd.user}@127.0.0.1:{sshd.ports['python']}"
    assert f"cannot reach {where} over ssh: " in line, line
    assert "Permission denied (publickey)" in line, line
    assert not host.far.exists("f.txt")


@pytest.mark.parametrize("known", ["unknown", "changed"])
def test_untrusted_host_key_is_one_line(
    known: str,
    sshd: Sshd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workdir: Path,
    running: list[SyncProcess],
) -> None:
    host = _host(sshd, "python", tmp_path, monkeypatch)
    if known == "unknown":
        known_hosts = tmp_path / "empty_known_hosts"
        known_hosts.write_text("")
    else:  # the server presents another key than the one on record
        known_hosts = sshd.known_hosts(sshd.keys.other_host, "changed_known_hosts")
    config = sshd.client_config(f"{known}_config", known=known_hosts)
    monkeypatch.setenv(SSH_COMMAND_ENV, sshd.ssh_command(config))
    before = known_hosts.read_bytes()
    (workdir / "f.txt").write_text("x")
    proc = SyncProcess(["--local-path", str(workdir), *host.args], cwd=workdir)
    line = _one_line_failure(proc, running)
    where = f"{sshd.user}@127.0.0.1:{sshd.ports['python']}"
    said = f"cannot reach {where} over ssh: host key verification failed: the host's key"
    if known == "unknown":
        assert f"{said} is not in known_hosts (run `ssh -F " in line, line
    else:
        assert f"{said} differs from the one in known_hosts (podsync never accepts it" in line
    assert known_hosts.read_bytes() == before, "known_hosts was changed"
    assert not host.far.exists("f.txt")


def test_bad_ssh_url_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, running: list[SyncProcess]
) -> None:
    monkeypatch.delenv(SSH_COMMAND_ENV, raising=False)
    proc = SyncProcess(
        ["--local-path", str(workdir), "--ssh", "ssh://me@host:99999", "--no-watch"], cwd=workdir
    )
    running.append(proc)
    code = proc.finish(60)
    no_traceback(proc.output)
    assert "port '99999' is not a number from 1 to 65535" in proc.output, proc.output
    assert code == 2, f"a user mistake exits 2, got {code}: {proc.output}"

"""The ``--ssh`` value, ``PODSYNC_SSH_COMMAND`` and ssh's failures as podsync reads them (no
server needed; tests/e2e/test_ssh.py runs the same code against a real sshd)."""

from __future__ import annotations

import pytest

from podsync.errors import TransportError, UsageError
from podsync.transport.ssh import SSH_COMMAND_ENV, Destination, SshTransport, parse_destination


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("host", Destination("host"), "host"),
        ("me@host", Destination("me@host"), "me@host"),
        ("ssh://host", Destination("host"), "host"),
        ("ssh://me@host:2222", Destination("me@host", 2222), "me@host:2222"),
        ("ssh://me@host:2222/", Destination("me@host", 2222), "me@host:2222"),
        ("ssh://[::1]:22", Destination("::1", 22), "[::1]:22"),
        ("ssh://me@[fe80::1]", Destination("me@fe80::1"), "me@fe80::1"),
        ("SSH://a.b@c.d:1", Destination("a.b@c.d", 1), "a.b@c.d:1"),
    ],
)
def test_ssh_destination_forms(text: str, expected: Destination, shown: str) -> None:
    assert parse_destination(text) == expected
    assert str(expected) == shown


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ssh://", "no host name"),
        ("ssh://me@", "no host name"),
        ("ssh://@host", "an empty user name"),
        ("ssh://me:secret@host", "without a password"),
        ("ssh://host:0", "port '0'"),
        ("ssh://host:ssh", "port 'ssh'"),
        ("ssh://host:", "port ''"),
        ("ssh://host/srv/app", "no path"),
        ("ssh://::1", "in brackets"),
        ("ssh://[::1", "in brackets"),
        ("ssh://-oProxyCommand=x", "no host name"),
    ],
)
def test_bad_ssh_destinations_name_the_flag(text: str, why: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_destination(text)
    message = str(err.value)
    assert message.startswith(f'--ssh: "{text}" is not a valid ssh://[user@]host[:port] (')
    assert why in message, message


def test_ssh_command_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SSH_COMMAND_ENV, "ssh -F '/my dir/config' -i ~/.ssh/deploy")
    argv = SshTransport("ssh://me@example.test:2222").client_argv(["echo", "a b"])
    assert argv == [
        "ssh", "-F", "/my dir/config", "-i", "~/.ssh/deploy",
        "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=4",
        "-p", "2222", "me@example.test", "--", "echo 'a b'",
    ]  # fmt: skip
    monkeypatch.setenv(SSH_COMMAND_ENV, "")
    assert SshTransport("h").client_argv(["true"])[:2] == ["ssh", "-T"]
    monkeypatch.setenv(SSH_COMMAND_ENV, "ssh -F 'unterminated")
    with pytest.raises(UsageError, match=rf"^{SSH_COMMAND_ENV}=.*: No closing quotation"):
        SshTransport("h")


def test_ssh_client_failures_read_as_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SSH_COMMAND_ENV, raising=False)
    transport = SshTransport("ssh://me@example.test:2222")
    assert transport.classify("oops", 1) is None  # the command's own exit code
    refused = transport.classify("me@example.test: Permission denied (publickey).\r\n", 255)
    assert isinstance(refused, TransportError)
    assert str(refused) == (
        "cannot reach me@example.test:2222 over ssh: me@example.test: Permission denied"
        " (publickey)."
    )
    unknown = transport.classify(
        "No ED25519 host key is known for [example.test]:2222 and you have requested strict"
        " checking.\r\nHost key verification failed.\r\n",
        255,
    )
    assert str(unknown) == (
        "cannot reach me@example.test:2222 over ssh: host key verification failed: the host's"
        " key is not in known_hosts (run `ssh -p 2222 me@example.test` once to check it and"
        " accept it)"
    )

"""The agent never dies of what it meets on disk (issue 8: defects 12 and 15, and the scan
warnings that must reach the user): names that are not UTF-8, symlinks it may not read,
skipped paths. Per-path trouble is a warning or a Problem; a request that cannot be served is
a one-line error answer, and the agent goes on serving.

Real agents: a local subprocess (the bundle, as for ``--local-target``) and real containers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.agent.agent_helpers import Loop, one_file, start_agent
from tests.support import docker as d

from podsync.bootstrap.probe import agent_command, launch_command
from podsync.core.paths import RelPath
from podsync.transport.docker import DockerTransport
from podsync.transport.local import LocalTransport


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def test_the_agent_runs_with_utf8_file_names_whatever_the_locale() -> None:
    assert agent_command("/a.pyz", "/app")[:3] == ["python3", "-X", "utf8"]
    assert "python3 -X utf8 " in launch_command("/app")[2]


def test_a_name_that_is_not_utf8_never_crashes_the_agent(tmp_path: Path, loop: Loop) -> None:
    """Defect 12: the agent crashed encoding the scan's warning about such a name. Whatever
    the scan makes of the name (listed byte-exact, or skipped with a warning), the agent
    answers, says so, and goes on serving; the warning text is printable."""
    far = tmp_path / "far"
    far.mkdir()
    os.mkdir(os.path.join(os.fsencode(far), b"dir-\xff"))
    with open(os.path.join(os.fsencode(far), b"dir-\xff", b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"latin-1 name")
    (far / "ok.txt").write_text("fine")
    session = loop.run(start_agent(LocalTransport(tmp_path), str(far), watch=True))
    try:
        listing = loop.run(session.endpoint.scan())
        assert RelPath("ok.txt") in listing
        names = {os.fsencode(p) for p in listing}
        assert b"dir-\xff/caf\xe9.txt" in names, names
        for warning in session.warnings:
            print(f"warning: {warning}")
            warning.encode("utf-8")  # printable on any terminal
        # The agent is alive: another request, and a hint from its watcher, work.
        (far / "later.txt").write_text("x")
        assert RelPath("later.txt") in loop.run(session.endpoint.scan([RelPath("later.txt")]))
        assert loop.run(session.endpoint.hints(), 10)
    finally:
        loop.run(session.endpoint.close(), 10)
    assert not any("Traceback" in line for line in session.stderr), list(session.stderr)


@pytest.fixture
def nobody_container() -> Iterator[str]:
    """A python container whose commands run as ``nobody`` (so permissions apply)."""
    from tests.conftest import _require_docker

    _require_docker()
    name = f"podsync-test-{uuid.uuid4().hex[:10]}"
    argv = ["run", "-d", "--network", "none", "--label", d.LABEL, "--name", name]
    result = d.docker(*argv, "--user", "65534:65534", "--workdir", "/tmp", d.PY_IMAGE)
    assert result.returncode == 0, result.stderr.decode()
    try:
        yield name
    finally:
        d.remove_container(name)


@pytest.mark.docker
def test_an_unreadable_symlink_never_kills_the_agent(nobody_container: str, loop: Loop) -> None:
    """Defect 15 (agent side): readlink fails with EACCES inside the scan, and a folder cannot
    be listed at all. The scan answers, says what it could not read (unknown, not gone: the
    engine keeps what it knew there) and the agent goes on serving."""
    script = (
        "mkdir -p /tmp/w/locked /tmp/w/open /tmp/w/closed/sub && ln -s target /tmp/w/locked/link"
        " && echo hi > /tmp/w/open/f.txt && echo x > /tmp/w/closed/sub/g"
        " && chmod 0600 /tmp/w/locked && chmod 0000 /tmp/w/closed"
    )
    assert d.docker_exec(nobody_container, ["sh", "-c", script]).returncode == 0
    session = loop.run(start_agent(DockerTransport(nobody_container), "/tmp/w"))
    try:
        listing = loop.run(session.endpoint.scan())
        assert RelPath("open/f.txt") in listing
        assert RelPath("locked/link") not in listing
        unknown = set(session.endpoint.unreadable)
        assert {RelPath("locked/link"), RelPath("closed")} <= unknown, unknown
        assert RelPath("open/f.txt") in loop.run(session.endpoint.scan([RelPath("open")]))
        assert session.endpoint.unreadable == []
        result = loop.run(session.endpoint.write(one_file("open/new.txt", b"new")))
        assert RelPath("open/new.txt") in result.written
    finally:
        loop.run(session.endpoint.close(), 10)


@pytest.mark.docker
def test_escaping_symlinks_are_reported_as_warnings(py_container: str, loop: Loop) -> None:
    """ "Also seen": the python agent skipped escaping symlinks silently."""
    script = "ln -s /etc /app/escape && ln -s ../../.. /app/up && echo x > /app/ok"
    assert d.docker_exec(py_container, ["sh", "-c", script]).returncode == 0
    session = loop.run(start_agent(DockerTransport(py_container), "/app"))
    try:
        listing = loop.run(session.endpoint.scan())
        assert set(listing) == {RelPath("ok")}
        text = "\n".join(session.warnings)
        assert "escape" in text and "up" in text, session.warnings
        # Each once: a rescan says nothing new.
        count = len(session.warnings)
        loop.run(session.endpoint.scan())
        assert len(session.warnings) == count
    finally:
        loop.run(session.endpoint.close(), 10)


@pytest.mark.docker
def test_absurd_mtimes_from_podsync_are_problems_not_a_dead_agent(
    py_container: str, loop: Loop
) -> None:
    """Defect 11 (the agent's side of it): an mtime the OS refuses is a per-path Problem."""
    session = loop.run(start_agent(DockerTransport(py_container), "/app"))
    try:
        result = loop.run(session.endpoint.write(one_file("far-future", b"x", 2**63 - 1)))
        assert RelPath("far-future") in result.written or result.problems
        again = loop.run(session.endpoint.write(one_file("fine", b"y")))
        assert RelPath("fine") in again.written
    finally:
        loop.run(session.endpoint.close(), 10)


@pytest.mark.docker
def test_a_name_that_is_not_utf8_syncs_both_ways_byte_exact(
    py_container: str, tmp_path: Path
) -> None:
    """Linux names are bytes: synced byte-exact (surrogateescape end to end)."""
    from tests.e2e.harness import SyncProcess

    workdir = tmp_path / "project"
    workdir.mkdir()
    with open(os.path.join(os.fsencode(workdir), b"local-\xff\xfe.txt"), "wb") as handle:
        handle.write(b"from here")
    make = "printf 'from there' > \"$(printf '/app/caf\\351.txt')\""
    assert d.docker_exec(py_container, ["sh", "-c", make]).returncode == 0
    args = ["--local-path", str(workdir), "--docker", py_container, "--no-watch"]
    proc = SyncProcess([*args, "--download-on-initial-sync"], workdir)
    assert proc.finish(120) == 0, proc.output
    local = os.listdir(os.fsencode(workdir))
    assert b"caf\xe9.txt" in local, local
    with open(os.path.join(os.fsencode(workdir), b"caf\xe9.txt"), "rb") as handle:
        assert handle.read() == b"from there"
    listing = d.docker_exec(py_container, ["find", "/app", "-maxdepth", "1"]).stdout
    assert b"/app/local-\xff\xfe.txt" in listing.split(b"\n"), listing

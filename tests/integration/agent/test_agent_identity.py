"""The container filesystem's identity (``fsid``) the agent reports in its hello: the same on
every connection to the same container (also after ``docker restart``), new for a recreated
container, and None (never an error) where it cannot be kept.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.agent.agent_helpers import Loop, start_agent
from tests.support import docker as d

from podsync.agent.identity import filesystem_id
from podsync.transport.docker import DockerTransport


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def fsid_of(loop: Loop, container: str) -> str | None:
    session = loop.run(start_agent(DockerTransport(container), "/app"))
    try:
        return session.endpoint.fsid
    finally:
        loop.run(session.endpoint.close(), 10)


@pytest.mark.docker
def test_same_container_same_fsid_recreated_container_new_one(loop: Loop) -> None:
    first = d.start_container(d.PY_IMAGE, name=f"podsync-test-fsid-{os.getpid()}")
    try:
        one = fsid_of(loop, first)
        assert one is not None
        hostname = d.docker("exec", first, "hostname").stdout.decode().strip()
        assert one.startswith(hostname + "/")
        assert fsid_of(loop, first) == one, "a reconnect changed the fsid"
        assert d.docker("restart", "-t", "0", first).returncode == 0
        assert fsid_of(loop, first) == one, "docker restart changed the fsid"
    finally:
        d.remove_container(first)
    again = d.start_container(d.PY_IMAGE, name=f"podsync-test-fsid-{os.getpid()}")
    try:
        assert fsid_of(loop, again) not in (None, one), "a recreated container kept the fsid"
    finally:
        d.remove_container(again)


def test_fsid_per_root_and_stable(tmp_path: Path) -> None:
    ids = tmp_path / "ids"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = filesystem_id(str(tmp_path / "a"), str(ids))
    assert one is not None and one == filesystem_id(str(tmp_path / "a"), str(ids))
    assert filesystem_id(str(tmp_path / "b"), str(ids)) not in (None, one)
    # The same folder through a symlink is the same folder.
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert filesystem_id(str(tmp_path / "link"), str(ids)) == one


def test_fsid_is_none_where_it_cannot_be_kept(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert filesystem_id(str(tmp_path), str(blocker / "ids")) is None
    (tmp_path / "garbled").mkdir()
    key_dir = tmp_path / "garbled"
    first = filesystem_id(str(tmp_path), str(key_dir))
    assert first is not None
    for entry in key_dir.iterdir():
        entry.write_text("not an id")
    assert filesystem_id(str(tmp_path), str(key_dir)) is None


def test_a_recreated_root_is_another_filesystem(tmp_path: Path) -> None:
    """Review 1.6: /tmp (where the id is kept) may outlive the synced folder."""
    ids = tmp_path / "ids"
    (tmp_path / "a").mkdir()
    before = filesystem_id(str(tmp_path / "a"), str(ids))
    (tmp_path / "a").rename(tmp_path / "a.old")
    (tmp_path / "a").mkdir()
    after = filesystem_id(str(tmp_path / "a"), str(ids))
    assert None not in (before, after) and before != after


def test_an_id_folder_that_is_not_ours_is_not_used(tmp_path: Path) -> None:
    """Review 2.3: on a shared ssh host another user could plant links in the id folder."""
    (tmp_path / "a").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    assert filesystem_id(str(tmp_path / "a"), str(tmp_path / "linked")) is None
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    ids = tmp_path / "ids"
    ids.mkdir(mode=0o700)
    key = hashlib.sha256(os.fsencode(os.path.realpath(tmp_path / "a"))).hexdigest()
    (ids / key).symlink_to(victim)
    assert filesystem_id(str(tmp_path / "a"), str(ids)) is None
    assert victim.read_text() == "keep me"
    if os.getuid() == 0:
        other = tmp_path / "other"
        other.mkdir()
        os.chown(other, 65534, 65534)
        assert filesystem_id(str(tmp_path / "a"), str(other)) is None

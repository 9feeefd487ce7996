"""The shell agent's filesystem identity against the Python agent's, in one real container.

A restart resumes from the saved state only when the container's filesystem is recognised:
the shell agent must keep the same identity as the Python agent (same folder of ids, same
format), and a new root folder, a new container or a tampered id must not be recognised.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from shell_helpers import Box, run
from tests.support import docker as d

from podsync.agent import identity

pytestmark = pytest.mark.docker

PY_ID = (
    "import sys; sys.path.insert(0, '/'); import identity;"
    " print(identity.filesystem_id(sys.argv[1]))"
)


@pytest.fixture
def pybox() -> Iterator[Box]:
    """A python-image container with the agent's identity module copied in (stdlib only)."""
    name = d.start_container(d.PY_IMAGE)
    try:
        copied = d.docker("cp", identity.__file__, f"{name}:/identity.py")
        assert copied.returncode == 0, copied.stderr
        b = Box(name)
        b.sh("mkdir -p /app /other")
        yield b
    finally:
        d.remove_container(name)


def python_id(box: Box, root: str) -> str:
    return box.sh('python3 -c "$1" "$2"', PY_ID, root).decode().strip()


def shell_id(box: Box, root: str) -> str | None:
    ep = box.endpoint(root=root)
    run(ep.start(watch=False))
    return ep.fsid


def test_shell_and_python_agents_agree_on_the_identity(pybox: Box) -> None:
    first = shell_id(pybox, "/app")
    assert first is not None and first.count("/") == 2
    assert python_id(pybox, "/app") == first  # the other agent meets the same filesystem
    assert shell_id(pybox, "/app") == first  # and again on the next connection
    assert shell_id(pybox, "/other") not in (None, first)  # another folder, another id
    pybox.sh("rm -rf /app && mkdir /app")
    assert shell_id(pybox, "/app") not in (None, first)  # a recreated folder is new


def test_a_tampered_or_foreign_id_folder_gives_no_identity(box: Box) -> None:
    assert shell_id(box, "/app") is not None
    box.sh("for f in /tmp/.podsync/ids/*; do echo 'not an id' > \"$f\"; done")
    assert shell_id(box, "/app") is None
    box.sh("rm -rf /tmp/.podsync/ids && ln -s /app /tmp/.podsync/ids")
    assert shell_id(box, "/app") is None
    assert box.sh("ls -A /app") == b""  # nothing written through the link

"""The probe (what a container lacks, said in one line) and the shell agent on GNU tools.

The GNU half runs the same scripts through :class:`LocalTransport` on this machine, whose
``sh`` is dash and whose find/stat/tar/sha256sum are GNU findutils/coreutils/tar: the
tools of Debian-based images without Python (``node:*-slim``, ``golang``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

import pytest
from shell_helpers import Box, file_item, items_of, run

from podsync.core.entry import ANY, DIR, FILE, LINK, Entry
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath
from podsync.engine.endpoint import DeleteItem, FileItem
from podsync.engine.shell_endpoint import ShellCapabilities, ShellEndpoint, probe
from podsync.errors import AgentError
from podsync.transport.docker import DockerTransport
from podsync.transport.local import LocalTransport


@pytest.mark.docker
def test_probe_of_the_busybox_image_finds_everything(box: Box) -> None:
    caps = run(probe(DockerTransport(box.name)))
    assert caps == ShellCapabilities(
        sha256sum=True, fractional_sleep=True, exact_reads=True, mtime_digits=9
    )


@pytest.mark.docker
def test_probe_names_a_missing_tar_in_one_line(dash_box: Box) -> None:
    # dash looks commands up on PATH (busybox ash would still find its built-in applet)
    dash_box.sh("rm -f /bin/tar /usr/bin/tar /sbin/tar /usr/sbin/tar")
    with pytest.raises(AgentError) as err:
        run(probe(DockerTransport(dash_box.name)))
    message = str(err.value)
    assert "\n" not in message
    assert "tar" in message and "install" in message and "python3" in message


@pytest.mark.docker
def test_probe_names_a_missing_shell_in_one_line(box2: Box) -> None:
    box2.sh("rm -f /bin/sh")
    with pytest.raises(AgentError) as err:
        run(probe(DockerTransport(box2.name)))
    message = str(err.value)
    assert "\n" not in message and "sh" in message and "python3" in message


@pytest.mark.docker
def test_probe_names_missing_tools(dash_box: Box) -> None:
    dash_box.sh("rm -f /bin/find /usr/bin/find /bin/readlink /usr/bin/readlink")
    with pytest.raises(AgentError, match="lacks find, readlink"):
        run(probe(DockerTransport(dash_box.name)))


needs_gnu = pytest.mark.skipif(
    not (
        shutil.which("dash")
        and shutil.which("sha256sum")
        and os.path.realpath("/bin/sh").endswith("dash")
    ),
    reason="needs dash as /bin/sh and GNU coreutils on this machine",
)


def local(root: Path, rules: Rules | None = None) -> ShellEndpoint:
    return ShellEndpoint(LocalTransport(root), str(root), rules or Rules())


@needs_gnu
def test_gnu_tools_scan_write_read_delete_digests(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sp ace/node_modules/x").mkdir(parents=True)
    (root / "sp ace/f\nnl").write_bytes(b"abc")
    (root / "sp ace/node_modules/x/y").write_bytes(b"")
    (root / "back\\slash").write_bytes(b"")
    os.symlink("sp ace", root / "lnk")
    os.symlink("../../x", root / "out")
    ep = local(root, Rules(["node_modules/"]))

    async def scenario() -> None:
        await ep.start(watch=False)
        snap = await ep.scan()
        assert sorted(snap) == ["lnk", "sp ace", "sp ace/f\nnl"]
        raw = {r.name for r in await ep.listing()}
        assert not [n for n in raw if b"node_modules/" in n]
        assert snap[RelPath("lnk")] == Entry(LINK, target="sp ace")
        digests = await ep.digests([RelPath("sp ace/f\nnl"), RelPath("lnk")])
        # GNU sha256sum escapes names with a newline: the parser must still match them
        assert digests == {"sp ace/f\nnl": hashlib.sha256(b"abc").hexdigest(), "lnk": None}
        items = [
            file_item("new/a b.txt", b"hello", mtime_s=1_600_000_000, exe=True),
            FileItem(RelPath("new/d"), Entry(DIR), None),
            FileItem(RelPath("new/l"), Entry(LINK, target="a b.txt"), None),
            file_item("sp ace/f\nnl", b"zz", expect=Entry(FILE, 1, 0)),  # stale: refused
        ]
        result = await ep.write(items_of(items))
        assert [p.path for p in result.problems] == ["sp ace/f\nnl"]
        assert result.written[RelPath("new/a b.txt")] == Entry(FILE, 5, 1_600_000_000 * 10**9, True)
        assert (root / "new/a b.txt").read_bytes() == b"hello"
        fresh = [file_item("sp ace/f\nnl", b"zz", expect=snap[RelPath("sp ace/f\nnl")])]
        assert (await ep.write(items_of(fresh))).problems == []
        assert (root / "sp ace/f\nnl").read_bytes() == b"zz"
        assert os.readlink(root / "new/l") == "a b.txt"
        got = {}
        async for src in ep.read([RelPath("new/a b.txt"), RelPath("new/d"), RelPath("lnk")]):
            got[src.path] = (src.entry, b"".join([c async for c in src.chunks()]))
        assert got["new/a b.txt"] == (result.written[RelPath("new/a b.txt")], b"hello")
        assert got["new/d"] == (Entry(DIR), b"")
        assert got["lnk"] == (Entry(LINK, target="sp ace"), b"")
        deleted = await ep.delete([DeleteItem(RelPath("new"), ANY)])
        assert deleted.written == {"new": None} and not (root / "new").exists()
        assert not [p for p in root.iterdir() if p.name.startswith(".podsync-stage")]

    asyncio.run(scenario())


@needs_gnu
def test_gnu_tools_hints(tmp_path: Path) -> None:
    ep = local(tmp_path)

    async def scenario() -> None:
        await ep.start(watch=True)
        await ep.scan()
        (tmp_path / "made").write_bytes(b"x")
        hints = await asyncio.wait_for(ep.hints(), 2)
        assert hints == ["made"]
        await ep.close()

    asyncio.run(scenario())

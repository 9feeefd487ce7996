"""Shell agent downloads and digests against a real busybox container, hostile tar included."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from shell_helpers import Box, run

from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.paths import RelPath
from podsync.engine.shell_endpoint import ShellEndpoint
from podsync.errors import ProtocolError

pytestmark = pytest.mark.docker

BIG = 20 << 20


async def download(ep: ShellEndpoint, paths: list[str], into: Path) -> dict[str, Entry]:
    """Consume read() like the engine does, writing files under ``into``."""
    got: dict[str, Entry] = {}
    async for src in ep.read([RelPath(p) for p in paths]):
        got[src.path] = src.entry
        target = into / src.path
        if src.entry.kind == FILE:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                async for data in src.chunks():
                    out.write(data)
    return got


def test_read_many_files_in_order_with_bounded_memory(box: Box, tmp_path: Path) -> None:
    box.sh(
        "cd /app && mkdir -p src 'sp ace' && i=0; while [ $i -lt 300 ]; do "
        "echo file $i > src/f$i.txt; i=$((i+1)); done && "
        f"head -c {BIG} /dev/urandom > big.bin && chmod +x big.bin && ln -s src/f1.txt lnk && "
        "printf nl > \"$(printf 'sp ace/new\\nline')\" && touch -d @1600000000 src/f0.txt"
    )
    want = ["src/f0.txt", "sp ace", "big.bin", "lnk", "vanished", "sp ace/new\nline"]
    want += [f"src/f{i}.txt" for i in range(1, 300)]
    ep = box.endpoint()
    tracemalloc.start()
    try:
        got = run(download(ep, want, tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(got) == [p for p in want if p != "vanished"]
    assert got["src/f0.txt"] == Entry(FILE, 7, 1600000000 * 10**9)
    assert got["sp ace"] == Entry(DIR)
    assert got["lnk"] == Entry(LINK, target="src/f1.txt")
    assert got["big.bin"].size == BIG and got["big.bin"].executable
    digest = box.sh("sha256sum /app/big.bin").split()[0].decode()
    assert hashlib.sha256((tmp_path / "big.bin").read_bytes()).hexdigest() == digest
    assert (tmp_path / "sp ace/new\nline").read_bytes() == b"nl"
    assert (tmp_path / "src/f299.txt").read_bytes() == b"file 299\n"
    assert peak < 8 << 20, f"peak Python memory {peak / 2**20:.1f} MiB while reading 20 MiB"


def test_digests_match_content_and_skip_non_files(box: Box) -> None:
    box.sh(
        "cd /app && printf abc > a && printf xyz > \"$(printf 'n\\nl')\" && mkdir d && "
        "ln -s a l && printf q > 'b\\s' && printf sp > 'x y'"
    )
    ep = box.endpoint()
    run(ep.start(watch=False))
    paths = [RelPath(p) for p in ("a", "n\nl", "d", "l", "gone", "x y")]
    got = run(ep.digests(paths))
    assert got == {
        "a": hashlib.sha256(b"abc").hexdigest(),
        "n\nl": hashlib.sha256(b"xyz").hexdigest(),
        "d": None,
        "l": None,
        "gone": None,
        "x y": hashlib.sha256(b"sp").hexdigest(),
    }


def hostile_archive(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, data: bytes = b"evil", **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)

        if kind == "dotdot":
            add("../evil")
        elif kind == "absolute":
            add("/tmp/evil")
        elif kind == "unasked":
            add("other.txt")
        elif kind == "twice":
            add("a.txt")
            add("a.txt")
        elif kind == "nested-dotdot":
            add("a.txt/../../evil")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "unasked", "twice", "nested-dotdot"])
def test_a_hostile_tar_is_refused_and_nothing_is_written(
    dash_box: Box, tmp_path: Path, kind: str
) -> None:
    # A fake tar earlier on PATH emits a crafted archive whatever it is asked.
    box = dash_box
    box.sh("cat > /evil.tar", stdin=hostile_archive(kind))
    box.sh(
        "mkdir -p /usr/local/bin && printf '#!/bin/sh\\ncat /evil.tar\\n' > /usr/local/bin/tar"
        " && chmod +x /usr/local/bin/tar && printf ok > /app/a.txt"
    )
    ep = box.endpoint()
    local = tmp_path / "local"
    local.mkdir()
    with pytest.raises(ProtocolError):
        run(download(ep, ["a.txt"], local))
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written in (["local"], ["local", "local/a.txt"])
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_a_hostile_symlink_member_is_not_passed_on(dash_box: Box, tmp_path: Path) -> None:
    box = dash_box
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("a.txt")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../../etc/passwd"
        tar.addfile(info)
    box.sh("cat > /evil.tar", stdin=buf.getvalue())
    box.sh(
        "mkdir -p /usr/local/bin && printf '#!/bin/sh\\ncat /evil.tar\\n' > /usr/local/bin/tar"
        " && chmod +x /usr/local/bin/tar && printf ok > /app/a.txt"
    )
    ep = box.endpoint()
    got = run(download(ep, ["a.txt"], tmp_path))
    assert got == {}
    assert [p.path for p in ep.read_problems] == ["a.txt"]


def test_random_binary_round_trip_through_write_and_read(box: Box, tmp_path: Path) -> None:
    from shell_helpers import file_item, items_of

    data = {f"d{i}/f{i}.bin": os.urandom(i * 1000 + 1) for i in range(20)}
    ep = box.endpoint()
    result = run(ep.write(items_of([file_item(p, b) for p, b in data.items()])))
    assert result.problems == [] and len(result.written) == 20
    got = run(download(ep, list(data), tmp_path))
    assert list(got) == list(data)
    for path, content in data.items():
        assert (tmp_path / path).read_bytes() == content


def test_hard_links_and_long_names_download(box: Box, tmp_path: Path) -> None:
    long = "L" * 120 + "/" + "é" * 80 + ".txt"  # > 100 bytes: a GNU long-name member
    box.sh(f"mkdir -p /app/{'L' * 120} && printf hi > /app/a && ln /app/a /app/b")
    box.sh('printf long > "/app/$1"', long)
    ep = box.endpoint()
    got = run(download(ep, ["a", "b", long], tmp_path))
    assert sorted(got) == sorted(["a", "b", long])  # b (same inode as a) comes on its own
    assert (tmp_path / "b").read_bytes() == b"hi" and (tmp_path / long).read_bytes() == b"long"


def test_writing_nothing_runs_nothing(box: Box) -> None:
    from shell_helpers import items_of

    ep = box.endpoint()
    result = run(ep.write(items_of([])))
    assert result.written == {} and result.problems == []

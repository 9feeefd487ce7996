"""Replica.scan / entry / open_read / digest on real trees."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest

from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.paths import RelPath
from podsync.errors import SafetyHalt
from podsync.replica import Replica


def _file(path: Path, data: bytes = b"x", mtime_ns: int | None = None, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_files_dirs_empty_dirs_exec_bit_and_ns_mtimes(tmp_path: Path) -> None:
    _file(tmp_path / "a.txt", b"hello", mtime_ns=1_600_000_000_123_456_789)
    _file(tmp_path / "bin" / "run.sh", b"#!/bin/sh\n", mode=0o755)
    (tmp_path / "empty" / "deeper").mkdir(parents=True)

    snap = Replica(str(tmp_path)).scan()

    assert snap == {
        "a.txt": Entry(FILE, 5, 1_600_000_000_123_456_789, False),
        "bin": Entry(DIR),
        "bin/run.sh": Entry(FILE, 10, (tmp_path / "bin" / "run.sh").stat().st_mtime_ns, True),
        "empty": Entry(DIR),
        "empty/deeper": Entry(DIR),
    }
    assert snap[RelPath("a.txt")].mtime_ns == 1_600_000_000_123_456_789  # nanoseconds kept exactly


def test_symlinks_inside_kept_outside_skipped_with_one_warning(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _file(root / "d" / "f.txt")
    (root / "d" / "rel").symlink_to("f.txt")
    (root / "up").symlink_to("d/f.txt")
    (root / "dirlink").symlink_to("d")
    (root / "dangling").symlink_to("nothing-here")
    (root / "abs").symlink_to(str(root / "d" / "f.txt"))
    (root / "d" / "escape").symlink_to("../../outside")
    replica = Replica(str(root))

    snap = replica.scan()

    assert snap[RelPath("d/rel")] == Entry(LINK, target="f.txt")
    assert snap[RelPath("up")] == Entry(LINK, target="d/f.txt")
    assert snap[RelPath("dirlink")] == Entry(LINK, target="d")
    assert snap[RelPath("dangling")] == Entry(LINK, target="nothing-here")
    assert "abs" not in snap and "d/escape" not in snap
    assert not any(p.startswith("dirlink/") for p in snap), "a symlinked dir was followed"
    assert sorted(w.split(":")[0] for w in replica.warnings) == ["abs", "d/escape"]
    replica.warnings.clear()
    replica.scan()
    assert replica.warnings == [], "the same skipped link is reported once, not on every scan"


def test_fifo_and_socket_are_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        _file(tmp_path / "real")
        assert set(Replica(str(tmp_path)).scan()) == {"real"}
    finally:
        sock.close()


def test_pruned_dirs_are_neither_listed_nor_entered(tmp_path: Path) -> None:
    _file(tmp_path / "node_modules" / "pkg" / "index.js")
    _file(tmp_path / "src" / "node_modules" / "x.js")
    _file(tmp_path / "src" / "main.py")
    _file(tmp_path / "src" / "main.pyc")
    asked: list[tuple[str, bool]] = []

    def prune(path: str, is_dir: bool) -> bool:
        asked.append((path, is_dir))
        name = path.rsplit("/", 1)[-1]
        return (is_dir and name == "node_modules") or path.endswith(".pyc")

    snap = Replica(str(tmp_path), prune=prune).scan()

    assert set(snap) == {"src", "src/main.py"}
    assert ("node_modules", True) in asked and ("src/main.pyc", False) in asked
    assert not any("node_modules/" in p for p, _ in asked), "a pruned directory was entered"


def test_own_temp_files_and_unsyncable_names_are_never_listed(tmp_path: Path) -> None:
    _file(tmp_path / ".podsync-tmp-123-abc")
    _file(tmp_path / "d" / ".podsync-tmp-9")
    _file(tmp_path / "back\\slash")
    _file(tmp_path / "ok")
    replica = Replica(str(tmp_path))
    assert set(replica.scan()) == {"d", "ok"}
    assert any("backslash" in w for w in replica.warnings)


def test_trash_inside_root_is_not_listed(tmp_path: Path) -> None:
    _file(tmp_path / ".devspace" / "trash" / "20260101T000000Z" / "old.txt")
    _file(tmp_path / ".devspace" / "logs" / "sync.log")
    snap = Replica(str(tmp_path), trash_dir=str(tmp_path / ".devspace" / "trash")).scan()
    assert set(snap) == {".devspace", ".devspace/logs", ".devspace/logs/sync.log"}


def test_scan_under_lists_each_path_and_its_subtree(tmp_path: Path) -> None:
    _file(tmp_path / "a" / "b" / "c.txt")
    _file(tmp_path / "a" / "other.txt")
    _file(tmp_path / "top.txt")
    _file(tmp_path / "skip" / "x")
    (tmp_path / "lnk").symlink_to("top.txt")
    replica = Replica(str(tmp_path), prune=lambda p, d: p == "skip")

    def under(*paths: str) -> set[str]:
        return set(replica.scan([RelPath(p) for p in paths]))

    assert under("a/b") == {"a/b", "a/b/c.txt"}
    assert under("a/b/c.txt", "top.txt") == {"a/b/c.txt", "top.txt"}
    assert under("a", "a/b") == {"a", "a/b", "a/b/c.txt", "a/other.txt"}
    assert under("missing", "a/missing/deeper", "top.txt/below") == set()
    assert under("skip", "skip/x") == set()
    assert under("lnk") == {"lnk"}
    assert under("") == set(replica.scan())


def test_missing_root_or_root_not_a_dir_halts(tmp_path: Path) -> None:
    with pytest.raises(SafetyHalt):
        Replica(str(tmp_path / "nope")).scan()
    _file(tmp_path / "file")
    with pytest.raises(SafetyHalt):
        Replica(str(tmp_path / "file")).scan()


def test_entry_open_read_and_digest(tmp_path: Path) -> None:
    _file(tmp_path / "f", b"content", mtime_ns=1_700_000_000_000_000_001, mode=0o755)
    (tmp_path / "l").symlink_to("f")
    (tmp_path / "out").symlink_to("/etc/passwd")
    os.mkfifo(tmp_path / "fifo")
    replica = Replica(str(tmp_path))

    assert replica.entry(RelPath("f")) == Entry(FILE, 7, 1_700_000_000_000_000_001, True)
    assert replica.entry(RelPath("out")) == Entry(LINK, target="/etc/passwd")
    assert replica.entry(RelPath("nope/deeper")) is None
    opened = replica.open_read(RelPath("f"))
    assert opened is not None
    entry, stream = opened
    with stream:
        assert stream.read() == b"content"
    assert entry == Entry(FILE, 7, 1_700_000_000_000_000_001, True)
    started = time.monotonic()
    for not_a_file in ("l", "out", "fifo", "nope", "l/x"):
        assert replica.open_read(RelPath(not_a_file)) is None, not_a_file
    assert time.monotonic() - started < 2, "opening a fifo must not block"
    assert replica.digest(RelPath("f")) == hashlib.sha256(b"content").hexdigest()
    assert replica.digest(RelPath("l")) is None


def test_scan_of_a_generated_10k_tree_is_fast(tmp_path: Path) -> None:
    for i in range(10_000):
        d = tmp_path / f"d{i // 1000}" / f"s{(i // 50) % 20}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_bytes(b"x" * (i % 100))
    replica = Replica(str(tmp_path))
    best = min(_timed(replica.scan) for _ in range(5))
    assert len(replica.scan()) == 10_000 + 10 + 200
    print(f"scan of 10k files: best {best * 1000:.1f} ms")
    assert best < 0.4, f"scan took {best:.3f} s"  # ~30 ms here; generous for loaded CI


def _timed(fn: object) -> float:
    assert callable(fn)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_links_with_dotdot_after_a_name_are_skipped(tmp_path: Path) -> None:
    # a/x -> ../b is inside; through it, a/x/../../y would resolve to outside the root.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").symlink_to("../b")
    (tmp_path / "a" / "l").symlink_to("x/../../y")
    (tmp_path / "a" / "ok").symlink_to("../b/./c")
    replica = Replica(str(tmp_path))
    snap = replica.scan()
    assert "a/l" not in snap and snap[RelPath("a/ok")] == Entry(LINK, target="../b/./c")
    assert [w.split(":")[0] for w in replica.warnings] == ["a/l"]

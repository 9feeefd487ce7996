"""Names as Linux has them (bytes) through the replica, on real files: scan, write, link,
delete, trash, exclude, watch. A name is the ``os.fsdecode`` view of its bytes (surrogate
escapes for undecodable bytes) and must come back to exactly the same bytes on disk.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from replica_helpers import collect_hints

from podsync.core.entry import ANY, DIR, FILE, LINK, Entry, Problem
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath, relpath
from podsync.replica import Replica
from podsync.replica.watch import Watcher, inotify_available

MTIME = 1_650_000_000_000_000_000
BAD = b"bad\xff\xfe.txt"  # not UTF-8
LATIN1 = b"caf\xe9"  # Latin-1 "cafe" with an accent: not UTF-8 either
UTF8 = "café-漢字".encode()
NEWLINE = b"new\nline"
LONG = b"\xff" * 255  # the longest name Linux allows, all undecodable


def raw_names(top: Path) -> set[bytes]:
    """Every path below ``top`` as bytes, relative (what the kernel really holds)."""
    out: set[bytes] = set()
    base = os.fsencode(top)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), base))
    return out


def make(top: Path, raw: bytes, data: bytes = b"x") -> None:
    full = os.path.join(os.fsencode(top), raw)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)


def put(replica: Replica, path: str, data: bytes) -> Entry | Problem:
    writer = replica.begin_write(RelPath(path), Entry(FILE, len(data), MTIME), ANY)
    writer.write(data)
    return writer.commit()


def test_scan_lists_every_name_byte_exact_and_warns_about_none(tmp_path: Path) -> None:
    for raw in (BAD, LATIN1, UTF8, NEWLINE, LONG, b"d\xff/inner\x80"):
        make(tmp_path, raw)
    replica = Replica(str(tmp_path))

    snap = replica.scan()

    assert {os.fsencode(p) for p in snap} == raw_names(tmp_path)
    assert snap[relpath(os.fsdecode(b"d\xff"))] == Entry(DIR)
    for path in snap:
        assert relpath(path) == path  # every listed path is canonical
    assert replica.warnings == []
    assert replica.unreadable == []


def test_scan_under_a_non_utf8_directory(tmp_path: Path) -> None:
    make(tmp_path, b"d\xff/a\xfe")
    make(tmp_path, b"other")
    replica = Replica(str(tmp_path))
    snap = replica.scan([relpath(os.fsdecode(b"d\xff"))])
    assert {os.fsencode(p) for p in snap} == {b"d\xff", b"d\xff/a\xfe"}


def test_write_link_delete_round_trip_the_exact_bytes(tmp_path: Path) -> None:
    replica = Replica(str(tmp_path))
    name = os.fsdecode(b"dir\xff/f\xfe.txt")
    assert isinstance(put(replica, name, b"data"), Entry)
    assert (os.fsencode(tmp_path) + b"/dir\xff/f\xfe.txt") in {
        os.path.join(os.fsencode(tmp_path), r) for r in raw_names(tmp_path)
    }
    with open(os.path.join(os.fsencode(tmp_path), b"dir\xff/f\xfe.txt"), "rb") as f:
        assert f.read() == b"data"

    link = relpath(os.fsdecode(b"dir\xff/l\xfd"))
    target = os.fsdecode(b"f\xfe.txt")
    assert replica.make_link(link, Entry(LINK, target=target), ANY) == Entry(LINK, target=target)
    assert os.readlink(os.path.join(os.fsencode(tmp_path), b"dir\xff/l\xfd")) == b"f\xfe.txt"

    made = replica.make_dir(relpath(os.fsdecode(b"e\x80")), Entry(DIR), ANY)
    assert made == Entry(DIR)
    snap = replica.scan()
    assert snap[link] == Entry(LINK, target=target)
    assert snap[relpath(name)].size == 4

    assert replica.delete(relpath(os.fsdecode(b"dir\xff")), ANY) is None
    assert replica.delete(relpath(os.fsdecode(b"e\x80")), ANY) is None
    assert raw_names(tmp_path) == set()
    assert replica.warnings == []


def test_link_targets_that_are_not_utf8_are_listed(tmp_path: Path) -> None:
    make(tmp_path, b"t\xff")
    os.symlink(b"t\xff", os.path.join(os.fsencode(tmp_path), b"l"))
    os.symlink(b"../out\xff", os.path.join(os.fsencode(tmp_path), b"esc\xff"))
    replica = Replica(str(tmp_path))
    snap = replica.scan()
    assert snap[RelPath("l")] == Entry(LINK, target=os.fsdecode(b"t\xff"))
    assert relpath(os.fsdecode(b"esc\xff")) not in snap
    assert replica.warnings == [
        "esc\\xff: skipped: symlink target '../out\\xff' leaves the sync folder"
    ]


def test_non_canonical_paths_and_targets_are_refused_not_crashed(tmp_path: Path) -> None:
    """Defence behind relpath(): a second spelling of 'é' or a surrogate that is no byte
    never reaches an os call (it would raise UnicodeEncodeError or name another file)."""
    replica = Replica(str(tmp_path))
    bad = RelPath("caf\udcc3\udca9")
    assert isinstance(put(replica, bad, b"x"), Problem)
    assert isinstance(replica.make_dir(RelPath("x\ud800"), Entry(DIR), ANY), Problem)
    link = replica.make_link(RelPath("l"), Entry(LINK, target="x\ud800"), ANY)
    assert isinstance(link, Problem)
    assert isinstance(replica.delete(bad, ANY), Problem)
    assert os.listdir(tmp_path) == []


def test_trash_keeps_replaced_and_deleted_non_utf8_files(tmp_path: Path) -> None:
    root, trash = tmp_path / "root", tmp_path / "trash"
    make(root, b"d\xff/old\xfe", b"first")
    replica = Replica(str(root), trash_dir=str(trash))
    name = os.fsdecode(b"d\xff/old\xfe")
    assert isinstance(put(replica, name, b"second"), Entry)
    assert replica.delete(relpath(os.fsdecode(b"d\xff")), ANY) is None
    kept = {r for r in raw_names(trash) if r.endswith(b"old\xfe") or b"old\xfe." in r}
    contents = set()
    for rel in kept:
        with open(os.path.join(os.fsencode(trash), rel), "rb") as f:
            contents.add(f.read())
    assert contents == {b"first", b"second"}
    assert raw_names(root) == set()


@pytest.mark.parametrize(
    ("pattern", "raw", "excluded"),
    [
        ("*.log", b"x\xff.log", True),
        ("bad?.txt", b"bad\xff.txt", True),  # '?' is one byte, an undecodable one too
        ("bad?.txt", b"bad\xc3\xa9.txt", False),  # ...and 'é' is two bytes in UTF-8 (as git)
        ("caf\u00e9/", b"caf\xc3\xa9", True),  # a non-ASCII pattern matches the UTF-8 name
        ("caf\u00e9/", b"caf\xe9", False),  # ...not its Latin-1 bytes
        ("d*/", b"d\xfe\xff", True),
    ],
)
def test_excludes_match_names_by_their_bytes(
    tmp_path: Path, pattern: str, raw: bytes, excluded: bool
) -> None:
    if pattern.endswith("/"):
        make(tmp_path, raw + b"/inner")
    else:
        make(tmp_path, raw)
    make(tmp_path, b"keep")
    rules = Rules(exclude=[pattern])
    snap = Replica(str(tmp_path), prune=rules.prune).scan()
    listed = {os.fsencode(p) for p in snap}
    assert (raw not in listed) == excluded, sorted(listed)
    assert b"keep" in listed


@pytest.mark.skipif(not inotify_available(), reason="inotify only (Linux)")
def test_watcher_hints_non_utf8_names(tmp_path: Path) -> None:
    watcher = Watcher(str(tmp_path))
    watcher.start()
    try:
        make(tmp_path, b"d\xff/f\xfe")
        want = {os.fsdecode(b"d\xff")}
        hints = collect_hints(watcher, lambda seen: want <= seen)
        assert all(relpath(h) == h for h in hints)
    finally:
        watcher.close()


def test_special_files_are_skipped_with_one_warning_each(tmp_path: Path) -> None:
    os.mkfifo(os.path.join(os.fsencode(tmp_path), b"fifo\xff"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    os.mknod(tmp_path / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a character device
    replica = Replica(str(tmp_path))
    try:
        assert replica.scan() == {}
        assert replica.scan([RelPath("sock")]) == {}
    finally:
        sock.close()
    assert sorted(replica.warnings) == [
        "fifo\\xff: skipped: a named pipe (fifo) is never synced",
        "null: skipped: a device file is never synced",
        "sock: skipped: a socket is never synced",
    ]


def test_path_longer_than_path_max_through_nested_dirs(tmp_path: Path) -> None:
    """Every replica call goes name by name from a directory fd, so depth has no limit."""
    part = "d" * 200
    depth = 25  # 25 x 201 bytes > PATH_MAX (4096)
    rel = "/".join([part] * depth)
    replica = Replica(str(tmp_path))
    assert isinstance(put(replica, f"{rel}/leaf", b"deep"), Entry)
    snap = replica.scan()
    assert snap[relpath(f"{rel}/leaf")].size == 4
    assert relpath(f"{rel}/leaf") in replica.scan([relpath(rel)])
    assert replica.delete(relpath(part), ANY) is None
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not inotify_available(), reason="inotify only (Linux)")
def test_watcher_sees_changes_beyond_path_max(tmp_path: Path) -> None:
    """Directories whose path is longer than PATH_MAX are watched through /proc/self/fd."""
    rel = "/".join(["d" * 200] * 25)
    replica = Replica(str(tmp_path))
    assert isinstance(put(replica, f"{rel}/before", b"x"), Entry)
    watcher = Watcher(str(tmp_path))
    watcher.start()
    try:
        assert watcher.mode == "inotify"
        assert isinstance(put(replica, f"{rel}/after", b"y"), Entry)
        hints = collect_hints(watcher, lambda seen: f"{rel}/after" in seen)
        assert f"{rel}/after" in hints
    finally:
        watcher.close()

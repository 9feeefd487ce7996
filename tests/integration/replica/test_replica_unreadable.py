"""Paths the replica cannot read or change: a warning naming the path and what really
happened, never a traceback, and never "gone".

How EACCES is produced without FUSE: permission bits (mode 000 directory, a directory with
read but no search permission, a read-only directory, a sticky directory) on a process they
apply to. The suite runs as root here, so each check runs in a forked child that dropped
root's override capabilities (``tests.support.privileges.without_root_override``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from tests.support.privileges import without_root_override

from podsync.core.entry import ANY, DIR, FILE, LINK, Entry, Problem
from podsync.core.paths import RelPath
from podsync.replica import Replica, fsops


def _tree(top: Path) -> Path:
    root = top / "root"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "f.txt").write_text("in a mode-000 folder")
    (root / "noexec" / "sub").mkdir(parents=True)
    (root / "noexec" / "f.txt").write_text("in a folder without search permission")
    (root / "noexec" / "l").symlink_to("f.txt")
    (root / "fine.txt").write_text("readable")
    (root / "locked").chmod(0o000)
    (root / "noexec").chmod(0o644)  # listable, but nothing in it can be lstat'ed
    return root


def _scan(
    root: Path, under: list[str] | None = None
) -> tuple[dict[str, Entry], list[str], list[str]]:
    def run() -> tuple[dict[str, Entry], list[str], list[str]]:
        replica = Replica(str(root))
        snap = replica.scan([RelPath(p) for p in under] if under else ())
        return dict(snap), list(replica.unreadable), list(replica.warnings)

    return without_root_override(run)


def test_unreadable_directory_and_entries_are_unknown_not_gone(tmp_path: Path) -> None:
    snap, unreadable, warnings = _scan(_tree(tmp_path))

    assert snap == {
        "fine.txt": snap["fine.txt"],
        "locked": Entry(DIR),
        "noexec": Entry(DIR),
        "noexec/sub": Entry(DIR),  # d_type from the listing; its content is unknown
    }
    assert sorted(unreadable) == ["locked", "noexec/f.txt", "noexec/l", "noexec/sub"]
    assert sorted(warnings) == [
        "locked: could not be read (Permission denied); its contents are left alone",
        "noexec/f.txt: skipped: cannot be read (Permission denied); left alone on both sides",
        "noexec/l: skipped: cannot be read (Permission denied); left alone on both sides",
        "noexec/sub: could not be read (Permission denied); its contents are left alone",
    ]


def test_scan_under_an_unreadable_path(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    snap, unreadable, warnings = _scan(root, ["locked/f.txt", "noexec/l", "noexec/sub"])
    assert snap == {}
    assert sorted(unreadable) == ["locked/f.txt", "noexec/l", "noexec/sub"]
    assert all("Permission denied" in w for w in warnings) and len(warnings) == 3
    snap, unreadable, _ = _scan(root, ["noexec", "locked"])
    assert snap == {"noexec": Entry(DIR), "noexec/sub": Entry(DIR), "locked": Entry(DIR)}
    assert sorted(unreadable) == ["locked", "noexec/f.txt", "noexec/l", "noexec/sub"]


def test_reading_an_unreadable_path_is_none_or_oserror_never_a_crash(tmp_path: Path) -> None:
    root = _tree(tmp_path)

    def run() -> tuple[object, object, str]:
        replica = Replica(str(root))
        try:
            replica.entry(RelPath("noexec/f.txt"))
            raised = "nothing"
        except PermissionError as exc:
            raised = exc.strerror or ""
        return (
            replica.open_read(RelPath("locked/f.txt")),
            replica.digest(RelPath("noexec/f.txt")),
            raised,
        )

    opened, digest, raised = without_root_override(run)
    assert (opened, digest, raised) == (None, None, "Permission denied")


def test_write_and_delete_problems_say_what_really_happened(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "ro").mkdir(parents=True)
    (root / "ro" / "f.txt").write_text("x")
    (root / "ro" / "d").mkdir()
    (root / "ro").chmod(0o555)

    def run() -> list[object]:
        replica = Replica(str(root))
        writer = replica.begin_write(RelPath("ro/new.txt"), Entry(FILE, 1, 1), ANY)
        writer.write(b"y")
        return [
            writer.commit(),
            replica.delete(RelPath("ro/f.txt"), ANY),
            replica.delete(RelPath("ro/d"), ANY),
            replica.make_dir(RelPath("ro/e"), Entry(DIR), ANY),
            replica.make_link(RelPath("ro/l"), Entry(LINK, target="f.txt"), ANY),
        ]

    outcomes = without_root_override(run)
    assert outcomes == [
        Problem(RelPath(p), "could not change it: Permission denied")
        for p in ("ro/new.txt", "ro/f.txt", "ro/d", "ro/e", "ro/l")
    ]
    assert sorted(os.listdir(root / "ro")) == ["d", "f.txt"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a file owned by another user")
@pytest.mark.parametrize("trash", [False, True])
def test_eperm_is_reported_as_eperm_not_as_not_a_directory(tmp_path: Path, trash: bool) -> None:
    """In a sticky folder (like /tmp) only the owner may remove a file: unlink fails with
    EPERM, which the old code took for "a directory" and reported as "'f.txt' is a file or
    a symlink, not a directory"."""
    root = tmp_path / "root"
    (root / "sticky").mkdir(parents=True)
    (root / "sticky").chmod(0o1777)
    (root / "sticky" / "f.txt").write_text("someone else's")
    os.chown(root / "sticky", 65534, 65534)  # neither the folder nor the file is ours
    os.chown(root / "sticky" / "f.txt", 65534, 65534)
    trash_dir = tmp_path / "trash"

    def run() -> object:
        replica = Replica(str(root), trash_dir=str(trash_dir) if trash else None)
        return replica.delete(RelPath("sticky/f.txt"), ANY)

    outcome = without_root_override(run)
    assert outcome == Problem(
        RelPath("sticky/f.txt"), "could not change it: Operation not permitted"
    )
    assert (root / "sticky" / "f.txt").read_text() == "someone else's"


def test_a_directory_swapped_for_a_symlink_mid_walk_is_unknown(tmp_path: Path) -> None:
    """fsops.walk opens each child with O_NOFOLLOW: a directory replaced by a symlink after
    the listing fails with ELOOP, recorded (its content unknown), never followed."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    errors: list[tuple[RelPath, OSError]] = []
    fd = fsops.open_root(str(tmp_path))
    try:
        for _, rel, _, descend in fsops.walk(fd, RelPath(""), errors):
            if rel == "":
                descend.append("link")
    finally:
        os.close(fd)
    assert [p for p, _ in errors] == ["link"]
    assert errors[0][1].errno in (errno.ELOOP, errno.ENOTDIR)  # Linux says ENOTDIR


def test_a_file_replaced_by_a_directory_before_reading(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("file")
    replica = Replica(str(tmp_path))
    assert replica.scan()[RelPath("x")].kind == FILE
    (tmp_path / "x").unlink()
    (tmp_path / "x").mkdir()
    assert replica.open_read(RelPath("x")) is None
    assert replica.entry(RelPath("x")) == Entry(DIR)
    assert replica.digest(RelPath("x")) is None


def test_a_name_too_long_to_exist_is_absent(tmp_path: Path) -> None:
    replica = Replica(str(tmp_path))
    long = RelPath("a" * 300)
    assert replica.scan([long]) == {}
    assert replica.unreadable == [] and replica.warnings == []
    assert replica.entry(long) is None
    problem = replica.make_dir(long, Entry(DIR), ANY)
    assert problem == Problem(long, "could not change it: File name too long")

"""Atomic writes, expectations, trash, dirs, links and deletes on real files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from replica_helpers import fingerprint, leftovers

from podsync.core.entry import ANY, DIR, FILE, LINK, Entry, Expect, Problem
from podsync.core.paths import RelPath
from podsync.replica import CHANGED, Replica

MTIME = 1_650_000_000_987_654_321


def put(
    replica: Replica,
    path: str,
    data: bytes,
    expect: Expect = ANY,
    exe: bool = False,
    mtime: int = MTIME,
) -> Entry | Problem:
    writer = replica.begin_write(RelPath(path), Entry(FILE, len(data), mtime, exe), expect)
    writer.write(data)
    return writer.commit()


def test_new_file_with_parents_mode_mtime_and_returned_entry(tmp_path: Path) -> None:
    replica = Replica(str(tmp_path))
    result = put(replica, "a/b/c.txt", b"hello")
    assert result == Entry(FILE, 5, MTIME, False)
    st = (tmp_path / "a" / "b" / "c.txt").stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o644, MTIME)
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o755 & ~_umask()
    assert replica.scan()[RelPath("a/b/c.txt")] == result, "our write must not echo as a change"
    assert put(replica, "run.sh", b"#!", exe=True) == Entry(FILE, 2, MTIME, True)
    assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o755


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_replacing_keeps_the_old_files_permission_bits(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"old")
    (tmp_path / "secret").chmod(0o600)
    replica = Replica(str(tmp_path))
    assert isinstance(put(replica, "secret", b"new"), Entry)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert isinstance(put(replica, "secret", b"new", exe=True), Entry)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o700


def test_a_reader_never_sees_partial_content(tmp_path: Path) -> None:
    size = 256 * 1024
    versions = [bytes([65 + i]) * size for i in range(4)]
    (tmp_path / "f").write_bytes(versions[0])
    replica = Replica(str(tmp_path))
    stop = threading.Event()
    seen_bad: list[int] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            data = (tmp_path / "f").read_bytes()
            reads[0] += 1
            if data not in versions:
                seen_bad.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(60):
            writer = replica.begin_write(RelPath("f"), Entry(FILE, size, MTIME), ANY)
            data = versions[n % 4]
            for i in range(0, size, 16 * 1024):  # many small chunks: a window to see a tear
                writer.write(data[i : i + 16 * 1024])
            assert isinstance(writer.commit(), Entry)
    finally:
        stop.set()
        thread.join()
    assert reads[0] > 10
    assert seen_bad == []


def test_exception_mid_stream_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old content")
    before = fingerprint(str(tmp_path))
    replica = Replica(str(tmp_path))
    with (
        pytest.raises(RuntimeError),
        replica.begin_write(RelPath("f"), Entry(FILE, 100, MTIME), ANY) as writer,
    ):
        writer.write(b"partial")
        raise RuntimeError("transfer broke")
    assert fingerprint(str(tmp_path)) == before
    assert leftovers(str(tmp_path)) == []

    writer = replica.begin_write(RelPath("new/f"), Entry(FILE, 3, MTIME), None)
    writer.write(b"abc")
    writer.abort()
    assert writer.commit() == Problem(RelPath("new/f"), "write already finished")
    assert not (tmp_path / "new" / "f").exists() and leftovers(str(tmp_path)) == []


def test_short_or_long_content_is_refused_as_source_changed(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old")
    replica = Replica(str(tmp_path))
    result = put(replica, "f", b"short")
    assert isinstance(result, Entry)
    writer = replica.begin_write(RelPath("f"), Entry(FILE, 10, MTIME), ANY)
    writer.write(b"12345")
    result2 = writer.commit()
    assert isinstance(result2, Problem) and "source changed" in result2.message
    assert (tmp_path / "f").read_bytes() == b"short" and leftovers(str(tmp_path)) == []


def test_expect_mismatch_leaves_a_concurrent_local_edit_alone(tmp_path: Path) -> None:
    replica = Replica(str(tmp_path))
    seen = put(replica, "f", b"v1")
    assert isinstance(seen, Entry)
    writer = replica.begin_write(RelPath("f"), Entry(FILE, 2, MTIME + 5), seen)
    writer.write(b"v2")
    (tmp_path / "f").write_bytes(b"user edit")  # between begin and commit
    assert writer.commit() == Problem(RelPath("f"), CHANGED)
    assert (tmp_path / "f").read_bytes() == b"user edit"
    assert leftovers(str(tmp_path)) == []

    # expect None ("must not exist") fails fast, before any byte is transferred
    early = replica.begin_write(RelPath("f"), Entry(FILE, 1, MTIME), None)
    early.write(b"x")
    assert early.commit() == Problem(RelPath("f"), CHANGED)
    assert (tmp_path / "f").read_bytes() == b"user edit"


def test_trash_receives_replaced_and_deleted_paths(tmp_path: Path) -> None:
    root, trash = tmp_path / "root", tmp_path / "trash"
    (root / "d" / "sub").mkdir(parents=True)
    (root / "f").write_bytes(b"first")
    (root / "d" / "sub" / "g").write_bytes(b"in dir")
    replica = Replica(str(root), trash_dir=str(trash))

    assert isinstance(put(replica, "f", b"second"), Entry)
    assert replica.delete(RelPath("f"), ANY) is None
    assert replica.delete(RelPath("d"), Entry(DIR)) is None
    assert not (root / "f").exists() and not (root / "d").exists()

    kept = {os.path.relpath(p, trash): p.read_bytes() for p in trash.rglob("*") if p.is_file()}
    contents = sorted(kept.values())
    assert contents == [b"first", b"in dir", b"second"], kept
    assert any(k.endswith("d/sub/g") for k in kept)


def test_without_trash_deletes_are_real(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_bytes(b"x")
    (tmp_path / "d" / "l").symlink_to("/etc")
    replica = Replica(str(tmp_path))
    assert replica.delete(RelPath("d"), ANY) is None
    assert list(tmp_path.iterdir()) == []
    assert replica.delete(RelPath("d"), ANY) is None, "already gone is success"
    assert os.path.isdir("/etc")


def test_delete_checks_the_expectation(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"edited")
    replica = Replica(str(tmp_path))
    stale = Entry(FILE, 3, MTIME)
    assert replica.delete(RelPath("f"), stale) == Problem(RelPath("f"), CHANGED)
    assert (tmp_path / "f").read_bytes() == b"edited"
    now = replica.entry(RelPath("f"))
    assert replica.delete(RelPath("f"), now) is None and not (tmp_path / "f").exists()


def test_make_dir(tmp_path: Path) -> None:
    replica = Replica(str(tmp_path))
    assert replica.make_dir(RelPath("a/b/c"), Entry(DIR), None) == Entry(DIR)
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert replica.make_dir(RelPath("a/b/c"), Entry(DIR), None) == Entry(DIR)
    (tmp_path / "file").write_bytes(b"x")
    assert replica.make_dir(RelPath("file"), Entry(DIR), None) == Problem(RelPath("file"), CHANGED)
    assert (tmp_path / "file").read_bytes() == b"x"
    file_entry = replica.entry(RelPath("file"))
    assert replica.make_dir(RelPath("file"), Entry(DIR), file_entry) == Entry(DIR)
    assert (tmp_path / "file").is_dir()


def test_make_link_inside_and_refusing_escapes(tmp_path: Path) -> None:
    replica = Replica(str(tmp_path))
    assert replica.make_link(RelPath("d/l"), Entry(LINK, target="../x"), None) == Entry(
        LINK, target="../x"
    )
    assert os.readlink(tmp_path / "d" / "l") == "../x"
    for bad in ("../../x", "/etc/passwd", "a/../../../x", ".."):
        result = replica.make_link(RelPath("d/bad"), Entry(LINK, target=bad), None)
        assert isinstance(result, Problem) and "leaves the sync folder" in result.message
    assert not os.path.lexists(tmp_path / "d" / "bad")
    (tmp_path / "f").write_bytes(b"data")
    assert replica.make_link(RelPath("f"), Entry(LINK, target="d"), ANY) == Entry(LINK, target="d")
    assert os.readlink(tmp_path / "f") == "d"
    assert leftovers(str(tmp_path)) == []


def test_a_file_replaces_a_directory_it_was_expected_to(tmp_path: Path) -> None:
    (tmp_path / "p" / "q").mkdir(parents=True)
    replica = Replica(str(tmp_path), trash_dir=str(tmp_path / ".trash"))
    assert isinstance(put(replica, "p", b"now a file", expect=Entry(DIR)), Entry)
    assert (tmp_path / "p").read_bytes() == b"now a file"
    assert any(p.name == "q" for p in (tmp_path / ".trash").rglob("*"))


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (".podsync-tmp-1-abc", "temporary"),
        ("d/.podsync-tmp-x/f", "temporary"),
        (".trash/20260101T000000Z/f", "trash"),
        ("ignored/f", "excluded"),
        ("f.pyc", "excluded"),
    ],
)
def test_reserved_and_pruned_paths_are_refused(tmp_path: Path, path: str, why: str) -> None:
    replica = Replica(
        str(tmp_path),
        prune=lambda p, d: p == "ignored" or p.endswith(".pyc"),
        trash_dir=str(tmp_path / ".trash"),
    )
    for result in (
        put(replica, path, b"x"),
        replica.make_dir(RelPath(path), Entry(DIR), None),
        replica.make_link(RelPath(path), Entry(LINK, target="f"), None),
    ):
        assert isinstance(result, Problem) and why in result.message, result
    assert list(tmp_path.iterdir()) == []


def test_parent_that_is_a_file_or_symlink_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "real").mkdir()
    (tmp_path / "linkdir").symlink_to("real")
    replica = Replica(str(tmp_path))
    for path in ("file/child", "linkdir/child", "linkdir/deeper/child"):
        assert isinstance(put(replica, path, b"x"), Problem)
        assert isinstance(replica.make_dir(RelPath(path), Entry(DIR), None), Problem)
        assert isinstance(replica.delete(RelPath(path), ANY), Problem)
    assert list((tmp_path / "real").iterdir()) == []
    assert replica.delete(RelPath(""), ANY) is not None, "the root itself is never deleted"


def test_cleanup_temps_removes_crash_leftovers_only(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / ".podsync-tmp-1-aaaa").write_bytes(b"x")
    (tmp_path / "d" / ".podsync-tmp-2-bbbb").write_bytes(b"x")
    (tmp_path / "d" / ".podsync-tmp-3-link").symlink_to("nowhere")
    (tmp_path / "d" / "keep").write_bytes(b"x")
    replica = Replica(str(tmp_path))
    assert replica.cleanup_temps() == 3
    assert leftovers(str(tmp_path)) == [] and (tmp_path / "d" / "keep").exists()


def test_fsync_mode_writes_the_same(tmp_path: Path) -> None:
    replica = Replica(str(tmp_path), fsync=True)
    assert put(replica, "f", b"durable") == Entry(FILE, 7, MTIME)


def test_deleting_a_directory_keeps_excluded_content_inside_it(tmp_path: Path) -> None:
    """Scans never list excluded paths, so a planned deletion of their parent directory must
    not take them along: the directory stays with only the excluded content in it."""
    (tmp_path / "build" / "cache").mkdir(parents=True)
    (tmp_path / "build" / "cache" / "big.bin").write_bytes(b"excluded")
    (tmp_path / "build" / "out.o").write_bytes(b"synced")
    (tmp_path / "gone" / "sub").mkdir(parents=True)
    (tmp_path / "gone" / "sub" / "f").write_bytes(b"x")
    replica = Replica(
        str(tmp_path), prune=lambda p, d: p == "build/cache", trash_dir=str(tmp_path / ".t")
    )
    assert replica.delete(RelPath("build"), ANY) is None
    assert (tmp_path / "build" / "cache" / "big.bin").read_bytes() == b"excluded"
    assert not (tmp_path / "build" / "out.o").exists()
    assert replica.delete(RelPath("gone"), ANY) is None
    assert not (tmp_path / "gone").exists()
    trashed = {p.name for p in (tmp_path / ".t").rglob("*")}
    assert {"out.o", "f", "sub", "gone"} <= trashed


def test_a_write_landing_right_after_our_rename_is_not_reported_as_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone writes the file in the instant after our rename (the fault switch below: the
    real rename, then another writer, which no real timing makes deterministic). The result
    must describe what we installed: reported as ours, the other write was recorded as agreed
    and overwritten by the next sync without a conflict copy (a data-loss race found by
    test_watch_phase_conflict_local_wins_and_every_container_version_is_kept)."""
    replica = Replica(str(tmp_path))
    real_replace = os.replace

    def replace_then_someone_writes(*args: object, **kwargs: object) -> None:
        real_replace(*args, **kwargs)  # type: ignore[arg-type]
        (tmp_path / "f.txt").write_bytes(b"someone else's longer content")

    monkeypatch.setattr(os, "replace", replace_then_someone_writes)
    result = put(replica, "f.txt", b"ours")
    monkeypatch.undo()
    assert result == Entry(FILE, 4, MTIME, False)
    assert not Entry(FILE, 4, MTIME, False).same_content(replica.scan()[RelPath("f.txt")])

"""Shell agent uploads and deletions against a real busybox container."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from shell_helpers import Box, chunks, file_item, items_of, run

from podsync.core.entry import ANY, DIR, FILE, LINK, Entry
from podsync.core.paths import RelPath
from podsync.engine.endpoint import DeleteItem, FileItem

pytestmark = pytest.mark.docker


def staging_dirs(box: Box) -> bytes:
    return box.sh("ls -a /app | grep podsync-stage || true")


def test_write_files_dirs_links_with_mtime_and_exec_bit(box: Box) -> None:
    ep = box.endpoint()
    items = [
        file_item("a/b/new file.txt", b"content", mtime_s=1_650_000_000),
        file_item("tool.sh", b"#!/bin/sh\necho hi\n", exe=True, expect=None),
        file_item("uni-é/\nnl", b"x"),
        FileItem(RelPath("empty/dir"), Entry(DIR), None),
        FileItem(RelPath("a/link"), Entry(LINK, target="b/new file.txt"), None),
    ]
    result = run(ep.write(items_of(items)))
    assert result.problems == []
    assert box.read("/app/a/b/new file.txt") == b"content"
    assert box.sh("stat -c %Y '/app/a/b/new file.txt'") == b"1650000000\n"
    assert box.sh("stat -c %a /app/tool.sh") == b"755\n"
    assert box.sh("/app/tool.sh") == b"hi\n"
    assert box.read("/app/uni-é/\nnl") == b"x"
    assert box.sh("[ -d /app/empty/dir ] && readlink /app/a/link") == b"b/new file.txt\n"
    # what write reports is what a scan reports (so echoes of our own writes compare equal)
    snap = run(ep.scan())
    for path, entry in result.written.items():
        assert snap[path] == entry
        assert entry is not None and entry.same_content(snap[path], ep.mtime_granularity_ns)
    assert result.written[RelPath("a/b/new file.txt")] == Entry(FILE, 7, 1_650_000_000 * 10**9)
    assert staging_dirs(box) == b""


def test_replacing_keeps_permissions_and_failed_expectation_leaves_old_content(box: Box) -> None:
    box.sh(
        "cd /app && printf old > f && chmod 640 f && printf keep > g && touch -d @1500000000 g"
        " && printf exe > e && chmod 755 e && touch -d @1500000000 e"
    )
    ep = box.endpoint()
    snap = run(ep.scan())
    stale = Entry(FILE, 4, 1_400_000_000 * 10**9)  # not what is there now
    not_exec = Entry(FILE, 3, 1_500_000_000 * 10**9, executable=False)  # but it is now
    result = run(
        ep.write(
            items_of(
                [
                    file_item("f", b"new content", exe=True, expect=snap[RelPath("f")]),
                    file_item("g", b"overwritten", expect=stale),
                    file_item("h", b"h", expect=Entry(FILE, 1, 0)),  # expected, but absent
                    file_item("e", b"replaced", expect=not_exec),
                    file_item("g2", b"new", expect=None),
                ]
            )
        )
    )
    assert sorted(p.path for p in result.problems) == ["e", "g", "h"]
    assert "changed in the container" in result.problems[0].message
    assert box.read("/app/e") == b"exe" and box.read("/app/g2") == b"new"
    assert box.read("/app/f") == b"new content"
    assert box.sh("stat -c %a /app/f") == b"750\n"  # read bits kept, exec added where read is
    assert box.read("/app/g") == b"keep"
    assert not box.exists("/app/h")
    assert sorted(result.written) == ["f", "g2"]
    assert staging_dirs(box) == b""


def test_never_writes_through_a_symlinked_parent(box: Box) -> None:
    box.sh("mkdir -p /outside /app && ln -s /outside /app/escape && ln -s /outside /app/d2")
    ep = box.endpoint()
    result = run(
        ep.write(
            items_of([file_item("escape/pwned", b"x"), FileItem(RelPath("d2"), Entry(DIR), ANY)])
        )
    )
    assert box.sh("ls -A /outside") == b""
    assert [p.path for p in result.problems] == ["escape/pwned"]
    # d2 expected ANY: the symlink is replaced by a real directory, /outside untouched
    assert box.sh("[ -d /app/d2 ] && [ ! -L /app/d2 ] && echo dir") == b"dir\n"


def test_a_file_that_changes_while_sent_is_not_put_in_place(box: Box) -> None:
    box.sh("printf original > /app/f")
    ep = box.endpoint()
    announced = Entry(FILE, 100, 1_700_000_000 * 10**9)  # but only 5 bytes arrive
    item = FileItem(RelPath("f"), announced, ANY, chunks(b"short"))
    result = run(ep.write(items_of([item])))
    assert [p.path for p in result.problems] == ["f"]
    assert box.read("/app/f") == b"original"


def test_a_concurrent_reader_never_sees_a_partial_file(box: Box) -> None:
    size = 4 << 20
    old, new = os.urandom(size), os.urandom(size)
    box.sh("cat > /app/big", stdin=old)
    # Watcher in the container: record every size it sees while the file is replaced.
    box.sh(
        "(while [ ! -e /tmp/stop ]; do stat -c %s /app/big >> /tmp/sizes 2>/dev/null"
        " || echo gone >> /tmp/sizes; done) >/dev/null 2>&1 &"
    )
    ep = box.endpoint()

    async def slow() -> AsyncIterator[bytes]:
        for i in range(0, size, 1 << 18):
            await asyncio.sleep(0.01)  # let the reader look many times mid-transfer
            yield new[i : i + (1 << 18)]

    entry = Entry(FILE, size, 1_700_000_000 * 10**9)
    result = run(ep.write(items_of([FileItem(RelPath("big"), entry, ANY, slow())])))
    box.sh("touch /tmp/stop")
    assert result.problems == []
    samples = box.read("/tmp/sizes").split()
    assert len(samples) > 20, "the reader did not get to look during the transfer"
    assert set(samples) == {str(size).encode()}, f"reader saw sizes {set(samples)}"
    assert box.read("/app/big") == new


def test_delete_checks_expectations_and_removes_trees(box: Box) -> None:
    box.sh("cd /app && mkdir -p d/e && : > d/e/f && printf a > keep && ln -s keep l && : > x")
    ep = box.endpoint()
    snap = run(ep.scan())
    result = run(
        ep.delete(
            [
                DeleteItem(RelPath("d"), snap[RelPath("d")]),
                DeleteItem(RelPath("keep"), Entry(FILE, 99, 0)),  # changed since: kept
                DeleteItem(RelPath("l"), snap[RelPath("l")]),
                DeleteItem(RelPath("x"), None),  # expected absent but present: kept
                DeleteItem(RelPath("never-there"), ANY),
            ]
        )
    )
    assert result.written == {"d": None, "l": None, "never-there": None}
    assert sorted(p.path for p in result.problems) == ["keep", "x"]
    assert box.sh("ls -A /app") == b"keep\nx\n"


def test_write_to_an_existing_directory_replaces_it_only_when_expected(box: Box) -> None:
    box.sh("mkdir -p /app/thing/sub && : > /app/thing/sub/f")
    ep = box.endpoint()
    r1 = run(ep.write(items_of([file_item("thing", b"file now", expect=None)])))
    assert [p.path for p in r1.problems] == ["thing"]
    r2 = run(ep.write(items_of([file_item("thing", b"file now", expect=Entry(DIR))])))
    assert r2.problems == [] and box.read("/app/thing") == b"file now"


def test_long_unicode_names_and_many_folders_in_one_batch(box: Box) -> None:
    long_dir = "ä" * 60 + "/" + "b" * 90
    items = [file_item(f"{long_dir}/{'é' * 70}-{i}.txt", f"n{i}".encode()) for i in range(3)]
    items += [file_item(f"f{i // 600}/x{i}", b"y") for i in range(1200)]  # > one mv per dir
    ep = box.endpoint()
    result = run(ep.write(items_of(items)))
    assert result.problems == [] and len(result.written) == 1203
    assert box.read(f"/app/{long_dir}/{'é' * 70}-2.txt") == b"n2"
    assert box.sh("find /app/f0 /app/f1 -type f | wc -l").strip() == b"1200"
    assert staging_dirs(box) == b""


def test_an_interrupted_upload_leaves_no_staging_dir_and_no_process(box: Box) -> None:
    box.sh("printf old > /app/f")
    ep = box.endpoint()
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        yield b"x" * 65536
        started.set()
        await asyncio.sleep(3600)  # the sender stalls: the upload is cancelled meanwhile
        yield b""

    async def scenario() -> None:
        item = FileItem(RelPath("f"), Entry(FILE, 1 << 20, 0), ANY, endless())
        task = asyncio.create_task(ep.write(items_of([item])))
        await asyncio.wait_for(started.wait(), 30)
        assert await asyncio.to_thread(staging_dirs, box) != b""
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert staging_dirs(box) == b""
    assert box.read("/app/f") == b"old"
    assert [p for p in box.processes() if "tar" in p or "sh -c" in p] == []


def test_uploads_and_polling_need_no_end_of_input(box: Box) -> None:
    # Kubernetes' older exec protocol cannot close stdin: framed uploads (dd fullblock) end
    # on their own zero frame, and close() still ends the poll loop.
    ep = box.endpoint(eof=False)

    async def scenario() -> None:
        await ep.start(watch=True)
        items = [file_item(f"k/f{i}", os.urandom(300_000)) for i in range(8)]
        result = await asyncio.wait_for(ep.write(items_of(items)), 60)
        assert result.problems == [] and len(result.written) == 8
        await ep.close()

    run(scenario())
    assert box.sh("ls /app/k | wc -l").strip() == b"8"
    assert staging_dirs(box) == b""
    assert [p for p in box.processes() if "sh -c" in p or "cat" in p] == []


def test_names_the_shell_would_expand_are_written_as_they_are(box: Box) -> None:
    """A file name is data, never code: `$(...)`, backquotes, `$VAR`, quotes and globs in a
    name land byte-exact and run nothing (the staged name was once spliced in unquoted)."""
    names = ["$(touch pwned)", "`touch pwned2`.txt", "$HOME x.txt", 'it\'s "q" *.txt']
    ep = box.endpoint()
    result = run(ep.write(items_of([file_item(f"sub/{n}", n.encode()) for n in names])))
    assert result.problems == []
    for n in names:
        assert box.read(f"/app/sub/{n}") == n.encode()
    ran = box.sh("find / -xdev \\( -name pwned -o -name pwned2 \\) 2>/dev/null || true")
    assert ran == b""


def test_a_large_write_goes_in_bounded_batches(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    """One exec per WRITE_BATCH_FILES files (a 120k-file upload in one exec peaked at ~400 MB
    locally): every file arrives, none is lost or repeated at a batch boundary."""
    from podsync.engine.shell import writing

    monkeypatch.setattr(writing, "WRITE_BATCH_FILES", 4)
    ep = box.endpoint()
    spawned: list[object] = []
    spawn = ep.transport.spawn

    async def counting_spawn(*args: object, **kwargs: object) -> object:
        spawned.append(args)
        return await spawn(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ep.transport, "spawn", counting_spawn)
    items = [file_item(f"d/f{i:02d}", b"%d" % i, expect=None) for i in range(10)]
    result = run(ep.write(items_of(items)))
    assert result.problems == []
    assert sorted(result.written) == [f"d/f{i:02d}" for i in range(10)]
    assert [box.read(f"/app/d/f{i:02d}") for i in range(10)] == [b"%d" % i for i in range(10)]
    assert len(spawned) == 3, "10 files in batches of 4: three execs"
    assert staging_dirs(box) == b""

"""Watchers on real trees: inotify (through ctypes) and the polling fallback."""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from replica_helpers import collect_hints

from podsync.replica import inotify
from podsync.replica.watch import PollingWatcher, Watcher, make_watcher

AnyWatcher = Watcher | PollingWatcher


def _prune(path: str, is_dir: bool) -> bool:
    return path.rsplit("/", 1)[-1] == "ignored" or path.endswith(".log")


@pytest.fixture(params=["inotify", "polling"])
def watched(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AnyWatcher, Path]]:
    (tmp_path / "existing" / "deep").mkdir(parents=True)
    (tmp_path / "existing" / "deep" / "f.txt").write_bytes(b"1")
    (tmp_path / "ignored").mkdir()
    watcher: AnyWatcher
    if request.param == "inotify":
        watcher = Watcher(str(tmp_path), _prune)
    else:
        watcher = PollingWatcher(str(tmp_path), _prune, interval=0.05)
    watcher.start()
    assert watcher.mode == request.param
    yield watcher, tmp_path
    watcher.close()


def test_create_modify_chmod_delete(watched: tuple[AnyWatcher, Path]) -> None:
    w, root = watched
    (root / "new.txt").write_bytes(b"a")
    collect_hints(w, lambda h: "new.txt" in h)
    (root / "existing" / "deep" / "f.txt").write_bytes(b"22")
    collect_hints(w, lambda h: "existing/deep/f.txt" in h)
    (root / "existing" / "deep" / "f.txt").chmod(0o755)
    collect_hints(w, lambda h: "existing/deep/f.txt" in h)
    (root / "new.txt").unlink()
    collect_hints(w, lambda h: "new.txt" in h)


def test_rename_hints_both_names(watched: tuple[AnyWatcher, Path]) -> None:
    w, root = watched
    os.rename(root / "existing" / "deep" / "f.txt", root / "moved.txt")
    collect_hints(w, lambda h: {"existing/deep/f.txt", "moved.txt"} <= h)
    os.rename(root / "existing", root / "renamed")
    collect_hints(w, lambda h: {"existing", "renamed"} <= h)
    (root / "renamed" / "deep" / "later.txt").write_bytes(b"x")
    collect_hints(w, lambda h: "renamed/deep/later.txt" in h)


def test_new_directory_is_watched_and_hinted(watched: tuple[AnyWatcher, Path]) -> None:
    w, root = watched
    (root / "fresh" / "sub").mkdir(parents=True)
    (root / "fresh" / "sub" / "early.txt").write_bytes(b"x")
    # The new directory's own hint covers what it held before its watch existed.
    collect_hints(w, lambda h: "fresh" in h or "fresh/sub/early.txt" in h)
    (root / "fresh" / "sub" / "late.txt").write_bytes(b"y")
    collect_hints(w, lambda h: "fresh/sub/late.txt" in h)


def test_pruned_and_temp_paths_are_not_reported(watched: tuple[AnyWatcher, Path]) -> None:
    w, root = watched
    (root / "ignored" / "x.txt").write_bytes(b"x")
    (root / "existing" / "ignored").mkdir()
    (root / "existing" / "app.log").write_bytes(b"x")
    (root / ".podsync-tmp-1-abc").write_bytes(b"x")
    (root / "marker").write_bytes(b"x")  # written last: once seen, the others were too
    hints = collect_hints(w, lambda h: "marker" in h)
    hints |= set(w.wait(0.2))
    assert hints == {"marker"}


def test_close_from_another_thread_wakes_wait(watched: tuple[AnyWatcher, Path]) -> None:
    w, _ = watched
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(w.wait(30)))
    thread.start()
    started = time.monotonic()
    w.close()
    thread.join(5)
    assert not thread.is_alive() and result == [[]]
    assert time.monotonic() - started < 2


def test_overflow_asks_for_a_full_rescan(tmp_path: Path) -> None:
    w = Watcher(str(tmp_path))
    w.start()
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        # Each file yields IN_CREATE + IN_CLOSE_WRITE; nobody reads meanwhile.
        for i in range(limit // 2 + 500):
            os.close(os.open(tmp_path / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
        collect_hints(w, lambda h: "" in h)
        # Still watching afterwards.
        (tmp_path / "after").write_bytes(b"x")
        collect_hints(w, lambda h: "after" in h)
    finally:
        w.close()


def test_parse_events_from_crafted_bytes() -> None:
    def ev(wd: int, mask: int, cookie: int, name: bytes, pad: int) -> bytes:
        body = name + b"\0" * pad
        return struct.pack("iIII", wd, mask, cookie, len(body)) + body

    buf = (
        ev(1, inotify.IN_CREATE, 0, b"a.txt", 11)
        + ev(-1, inotify.IN_Q_OVERFLOW, 0, b"", 0)
        + ev(2, inotify.IN_MOVED_FROM | inotify.IN_ISDIR, 77, b"dir", 13)
    )
    assert inotify.parse_events(buf) == [
        inotify.Event(1, inotify.IN_CREATE, 0, b"a.txt"),
        inotify.Event(-1, inotify.IN_Q_OVERFLOW, 0, b""),
        inotify.Event(2, inotify.IN_MOVED_FROM | inotify.IN_ISDIR, 77, b"dir"),
    ]
    assert inotify.parse_events(buf[:10]) == []  # a torn header is not invented into an event


def test_forced_polling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PODSYNC_FORCE_POLLING", "1")
    assert isinstance(make_watcher(str(tmp_path)), PollingWatcher)
    w = Watcher(str(tmp_path))
    w.start()
    try:
        assert w.mode == "polling"
        (tmp_path / "x").write_bytes(b"x")
        collect_hints(w, lambda h: "x" in h)
    finally:
        w.close()
    monkeypatch.delenv("PODSYNC_FORCE_POLLING")
    assert isinstance(make_watcher(str(tmp_path)), Watcher)


def test_polling_reports_a_vanished_root_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    w = PollingWatcher(str(root), interval=0.02)
    w.start()
    root.rmdir()
    collect_hints(w, lambda h: "" in h)
    assert w.wait(0.1) == []
    w.close()


def test_inotify_idle_costs_no_cpu(tmp_path: Path) -> None:
    for i in range(2000):
        d = tmp_path / f"d{i // 100}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}").write_bytes(b"x")
    w = Watcher(str(tmp_path))
    w.start()
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            assert w.wait(0.5) == []
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        w.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.05, f"idle watcher used {cpu:.3f} s CPU in 2 s"


_LIMIT_SCRIPT = r"""
import os, sys, time
root = sys.argv[1]
with open("/proc/sys/user/max_inotify_watches", "w") as f:
    f.write("4")
from podsync.replica.watch import Watcher

def hints_until(w, cond):
    seen = set()
    deadline = time.monotonic() + 10
    while not cond(seen):
        assert time.monotonic() < deadline, sorted(seen)
        seen.update(w.wait(0.2))
    return seen

os.makedirs(os.path.join(root, "a"))
w = Watcher(root)
w.start()
assert w.mode == "inotify", w.mode
for i in range(6):  # more directories than the 4 watches allowed
    os.makedirs(os.path.join(root, "a", "n%d" % i))
hints_until(w, lambda h: "" in h)
assert w.mode == "polling", w.mode
open(os.path.join(root, "a", "n5", "late.txt"), "w").close()
hints_until(w, lambda h: "a/n5/late.txt" in h)
w.close()
big = Watcher(root)
big.start()
assert big.mode == "polling", "a tree larger than the watch limit must poll from the start"
big.close()
print("OK")
"""


def test_watch_limit_falls_back_to_polling(tmp_path: Path) -> None:
    """Runs in a user namespace whose own inotify watch limit we may lower without
    touching the machine-wide one other processes rely on."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) not installed")
    probe = subprocess.run(["unshare", "-Ur", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces unavailable: {probe.stderr.decode().strip()}")
    done = subprocess.run(
        ["unshare", "-Ur", sys.executable, "-c", _LIMIT_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr

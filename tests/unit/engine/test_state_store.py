"""The persisted sync state (``engine.state``): round trip, and every way a file can be
unusable (each is ignored with one line, never a crash)."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest

from podsync.core.ancestor import AncestorEntry
from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.paths import RelPath
from podsync.engine import state as st
from podsync.engine.state import PairKey, StateError, StateStore, local_identity

KEY = PairKey("/home/me/app", "docker:web", "/app")
ANCESTOR = {
    RelPath("src"): AncestorEntry(Entry(DIR), Entry(DIR)),
    RelPath("src/a.py"): AncestorEntry(Entry(FILE, 3, 10**18), Entry(FILE, 3, 10**18 + 5)),
    RelPath("src/l"): AncestorEntry(Entry(LINK, target="a.py"), Entry(LINK, target="a.py")),
    RelPath("conflict.txt"): AncestorEntry(Entry(FILE, 1, 5), Entry(FILE, 2, 6), True),
    RelPath("kept"): AncestorEntry(None, Entry(FILE, 9, 9)),
    # A name that is not UTF-8 on disk (byte 0xff), as os.fsdecode gives it.
    RelPath("bin\udcffary"): AncestorEntry(Entry(FILE, 4, 4), Entry(FILE, 4, 4)),
}


def test_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path, KEY)
    assert store.load() is None
    assert store.save(dict(ANCESTOR), "host:abc", (1, 2))
    saved = store.load()
    assert saved is not None
    assert saved.ancestor == ANCESTOR
    assert saved.ancestor[RelPath("conflict.txt")].conflict
    assert saved.fsid == "host:abc"
    assert saved.local_id == (1, 2)
    assert not list(store.folder.glob(".*tmp")), "no temp file is left behind"


def test_other_pair_same_folder(tmp_path: Path) -> None:
    StateStore(tmp_path, KEY).save(dict(ANCESTOR), "x", None)
    other = StateStore(tmp_path, PairKey("/home/me/app", "docker:web", "/srv"))
    assert other.path != StateStore(tmp_path, KEY).path
    assert other.load() is None


def _write(store: StateStore, doc: object, local: bytes, remote: bytes) -> None:
    parts = [json.dumps(doc).encode(), local, remote]
    store.folder.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(st.MAGIC + b"".join(st._LEN.pack(len(p)) + p for p in parts))


def _good_doc() -> dict[str, object]:
    return {
        "format": st.FORMAT,
        "version": st.VERSION,
        "key": KEY.as_list(),
        "fsid": "f",
        "local_id": [1, 2],
        "saved": 1.0,
        "lz": False,
        "rz": False,
        "conflicts": [],
        "remote_absent": [],
    }


def _cols(paths: list[str], mtime: int = 1, size: int = 1) -> bytes:
    return json.dumps([paths, "f" * len(paths), [size] * len(paths), [mtime] * len(paths),
                       "0" * len(paths), []]).encode()  # fmt: skip


GOOD = _cols(["a"])


@pytest.mark.parametrize(
    ("change", "local", "says"),
    [
        ({"format": "nope"}, GOOD, "not a podsync state file"),
        ({"version": 99}, GOOD, "format version 99"),
        ({"key": ["/elsewhere", "docker:web", "/app"]}, GOOD, "another sync pair"),
        ({}, _cols(["../escape"]), "corrupt"),
        ({}, _cols(["/abs"]), "corrupt"),
        ({}, _cols([""]), "corrupt"),
        ({}, _cols(["a"], size=-1), "corrupt"),
        ({}, _cols(["a"], mtime=10**30), "corrupt"),
        ({"conflicts": ["nowhere"]}, GOOD, "corrupt"),
        ({"conflicts": "a"}, GOOD, "corrupt"),
        ({"lz": "yes"}, GOOD, "corrupt"),
        ({"remote_absent": ["b"]}, GOOD, "corrupt"),
        ({}, b"[1,2]", "corrupt"),
    ],
)
def test_unusable_documents(
    tmp_path: Path, change: dict[str, object], local: bytes, says: str
) -> None:
    store = StateStore(tmp_path, KEY)
    _write(store, {**_good_doc(), **change}, local, GOOD)
    with pytest.raises(StateError, match=says) as info:
        store.load()
    assert "\n" not in str(info.value)


def test_a_good_document_loads(tmp_path: Path) -> None:
    store = StateStore(tmp_path, KEY)
    _write(store, {**_good_doc(), "conflicts": ["a"]}, GOOD, _cols(["a", "b"]))
    saved = store.load()
    assert saved is not None
    assert saved.ancestor[RelPath("a")].conflict
    assert saved.ancestor[RelPath("b")].local is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"garbage", st.MAGIC, st.MAGIC + b"\x00\x00\x00\x05ab", zlib.compress(b"x"),
     st.MAGIC + st._LEN.pack(2) + b"{}" + st._LEN.pack(0) + st._LEN.pack(0) + b"tail"],
)  # fmt: skip
def test_garbage_files(tmp_path: Path, raw: bytes) -> None:
    store = StateStore(tmp_path, KEY)
    store.folder.mkdir(parents=True)
    store.path.write_bytes(raw)
    with pytest.raises(StateError):
        store.load()


def test_oversized_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path, KEY)
    store.save(dict(ANCESTOR), "f", None)
    monkeypatch.setattr(st, "MAX_FILE_BYTES", 10)
    with pytest.raises(StateError, match="larger than"):
        store.load()


def test_a_150k_entry_tree_round_trips(tmp_path: Path) -> None:
    """A whole tree is one listing in the file, far above the wire's 1 MiB per piece (issue 8:
    at ~15k+ entries the state was ignored as "corrupt" at every start, so no resume)."""
    big = {
        RelPath(f"node_modules/pkg{i // 100:04d}/lib/file{i % 100:03d}.js"): AncestorEntry(
            Entry(FILE, i, 10**18 + i), Entry(FILE, i, 10**18 + i + (i % 2))
        )
        for i in range(150_000)
    }
    store = StateStore(tmp_path, KEY)
    assert store.save(big, "f", None)
    saved = store.load()
    assert saved is not None
    assert saved.ancestor == big


def test_too_many_entries_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path, KEY)
    store.save(dict(ANCESTOR), "f", None)
    monkeypatch.setattr(st, "MAX_ENTRIES", 2)
    assert not store.save(dict(ANCESTOR), "f", None)
    assert store.load() is None, "a stale smaller state must not survive"


def test_files_per_project_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "MAX_FILES", 3)
    stores = [StateStore(tmp_path, PairKey(f"/p{i}", "t", "/c")) for i in range(5)]
    for n, store in enumerate(stores):
        store.save(dict(ANCESTOR), "f", None)
        os.utime(store.path, (n, n))  # oldest first
    left = sorted(p.name for p in stores[0].folder.glob("*.state"))
    assert len(left) == 3
    assert stores[-1].path.name in left


def test_forget(tmp_path: Path) -> None:
    store = StateStore(tmp_path, KEY)
    store.save(dict(ANCESTOR), "f", None)
    store.forget()
    store.forget()  # twice is fine
    assert store.load() is None


def test_local_identity(tmp_path: Path) -> None:
    assert local_identity(tmp_path / "x") is None
    (tmp_path / "x").mkdir()
    st_x = os.stat(tmp_path / "x")
    assert local_identity(tmp_path / "x") == (st_x.st_dev, st_x.st_ino)

"""The conflict store and ``podsync conflicts [resolve]`` on real files (no container: the
records are written here as the running sync writes them; tests/e2e/test_conflicts.py drives
real conflicts through real syncs). Covers: records shared by two processes without a lock,
resolution both ways, what ``status sync`` counts, and one-line errors with their exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podsync.cli.app import run_cli
from podsync.engine.conflicts import ConflictRecord, ConflictStore, Version
from podsync.engine.resolve import SECOND_NS, ResolveError, resolve
from podsync.engine.status import StatusFile, SyncStatus, status_path, write_status

T0 = 1_700_000_000 * SECOND_NS


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    return tmp_path


def store_of(project: Path) -> ConflictStore:
    return ConflictStore(project / ".devspace" / "conflicts")


def conflict(
    project: Path,
    path: str,
    local: bytes,
    container: bytes,
    *,
    in_container: bool = False,
    local_in_container: bool = True,
) -> ConflictRecord:
    """A conflict as the sync leaves it: the local version in place, the container's saved."""
    store = store_of(project)
    target = project / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(local)
    os.utime(target, ns=(T0, T0))
    copy = store.copy_folder() / path
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(container)
    record = ConflictRecord(
        root=str(project),
        path=path,
        when="2024-01-01T00:00:00+00:00",
        reason="changed on both sides",
        local=Version(len(local), T0),
        container=Version(len(container), T0 + 5 * SECOND_NS),
        copy=str(copy),
        in_container=in_container,
        local_in_container=local_in_container,
    )
    return store.put(record)


def everything(folder: Path) -> set[bytes]:
    """Every file content under ``folder`` (nothing may be lost)."""
    return {p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"}


# -- the store ------------------------------------------------------------------------------
def test_a_new_conflict_at_the_same_path_keeps_the_older_copy_listed(project: Path) -> None:
    first = conflict(project, "a.txt", b"local 1", b"container 1")
    second = conflict(project, "a.txt", b"local 2", b"container 2")
    (only,) = store_of(project).records()
    assert only.copy == second.copy and only.earlier == (first.copy,)
    assert [p.read_bytes() for p in only.copies()] == [b"container 2", b"container 1"]


def test_only_one_of_two_resolvers_gets_a_record_and_a_failed_one_gives_it_back(
    project: Path,
) -> None:
    record = conflict(project, "a.txt", b"l", b"c")
    store = store_of(project)
    claim = store.claim(record)
    assert claim is not None and store.claim(record) is None
    assert store.records() == []
    store.give_back(claim)
    assert store.records() == [record]


def test_a_conflict_recorded_again_while_claimed_keeps_both_copies(project: Path) -> None:
    old = conflict(project, "a.txt", b"l1", b"c1")
    store = store_of(project)
    claim = store.claim(old)
    assert claim is not None
    new = conflict(project, "a.txt", b"l2", b"c2")  # the running sync records it again
    store.give_back(claim)  # the resolution failed
    (merged,) = store.records()
    assert merged.copy == new.copy and old.copy in merged.earlier


def test_the_claim_of_a_resolver_that_died_is_given_back(project: Path) -> None:
    record = conflict(project, "a.txt", b"l", b"c")
    store = store_of(project)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    source = store.open_dir / f"{record.key}.json"
    source.rename(source.with_name(f"{source.name}.claim-{dead.pid}-0000"))
    assert store.records() == [record]


def test_unreadable_records_are_skipped(project: Path) -> None:
    record = conflict(project, "a.txt", b"l", b"c")
    (store_of(project).open_dir / "garbage.json").write_text("{not json")
    assert store_of(project).records() == [record]


def test_settled_versions_are_consumed_once_and_only_for_that_version(project: Path) -> None:
    record = conflict(project, "a.txt", b"l", b"c", in_container=True)
    store = store_of(project)
    assert record.container is not None
    store.settle(record)
    assert store.take_settled(record.root, record.path, record.container)
    assert not store.take_settled(record.root, record.path, record.container)
    store.settle(record)
    assert not store.take_settled(record.root, record.path, Version(1, 2))
    assert not store.take_settled(record.root, record.path, record.container)  # dropped


WRITER = """
import sys
from pathlib import Path
from podsync.engine.conflicts import ConflictRecord, ConflictStore, Version
store = ConflictStore(Path(sys.argv[1]))
for n in range(400):
    store.put(ConflictRecord(root="/r", path=f"p{n % 7}", when="w", reason="x" * (n % 50),
              local=Version(n, n), container=Version(n, n), copy=f"/c/{n}"))
"""


def test_records_are_never_seen_half_written_while_a_sync_writes_them(project: Path) -> None:
    """A real second process writes records as fast as it can while this one reads every
    record file raw and claims some: each file read is complete JSON, nothing raises."""
    store = store_of(project)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store.folder)])
    reads = claims = 0
    try:
        while writer.poll() is None or reads == 0:
            for item in store.open_dir.glob("*.json") if store.open_dir.exists() else []:
                try:
                    data = item.read_text()
                except FileNotFoundError:
                    continue  # claimed or replaced meanwhile
                ConflictRecord.from_json(json.loads(data))
                reads += 1
            for record in store.records()[:2]:
                claim = store.claim(record)
                if claim is not None:
                    claims += 1
                    store.finish(claim)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0 and reads > 0 and claims > 0


# -- resolving ------------------------------------------------------------------------------
def test_keep_container_puts_it_in_place_with_a_winning_mtime(project: Path) -> None:
    record = conflict(project, "src/a.txt", b"local", b"container")
    before = everything(project)
    started = time.time_ns()
    done = resolve(store_of(project), record, "container", project / ".devspace" / "trash")
    assert "kept the container's version" in done.message
    target = project / "src" / "a.txt"
    assert target.read_bytes() == b"container"
    assert record.container is not None
    assert target.stat().st_mtime_ns >= max(started, record.container.mtime_ns + SECOND_NS)
    assert everything(project / ".devspace" / "trash") == {b"local"}
    assert everything(project) == before  # nothing lost: the local version is in the trash
    assert store_of(project).records() == []
    assert not Path(str(record.copy)).exists()


def test_keep_local_trashes_the_copy_and_leaves_an_uploaded_local_file_alone(
    project: Path,
) -> None:
    record = conflict(project, "a.txt", b"local", b"container", local_in_container=True)
    resolve(store_of(project), record, "local", project / ".devspace" / "trash")
    assert (project / "a.txt").read_bytes() == b"local"
    assert (project / "a.txt").stat().st_mtime_ns == T0  # the container has it already
    assert everything(project / ".devspace" / "trash") == {b"container"}
    assert store_of(project).records() == []
    assert not (store_of(project).settled_dir).exists()


def test_keep_local_of_an_initial_sync_conflict_makes_it_a_new_local_edit(project: Path) -> None:
    record = conflict(
        project, "a.txt", b"local", b"container", in_container=True, local_in_container=False
    )
    resolve(store_of(project), record, "local", project / ".devspace" / "trash")
    assert record.container is not None
    mtime = (project / "a.txt").stat().st_mtime_ns
    assert mtime >= record.container.mtime_ns + SECOND_NS
    # the container still holds the version the user rejected: the sync must not record it
    # again when it replaces it
    assert store_of(project).take_settled(record.root, record.path, record.container)


def test_a_gone_copy_is_a_one_line_error_and_the_record_stays(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = conflict(project, "a.txt", b"local", b"container")
    Path(str(record.copy)).unlink()
    with pytest.raises(ResolveError, match=r"saved container version .* is gone"):
        resolve(store_of(project), record, "container", project / "trash")
    assert run_cli(["conflicts", "resolve", "a.txt", "--keep", "container"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("podsync: a.txt: the saved container")
    assert store_of(project).records() == [record]
    assert (project / "a.txt").read_bytes() == b"local"


# -- the command line -----------------------------------------------------------------------
def test_conflicts_lists_one_row_per_conflict_and_json(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["conflicts"]) == 0
    assert capsys.readouterr().out == f"No unresolved conflicts in {project.resolve()}.\n"
    conflict(project, "src/app.py", b"local!", b"container!!")
    conflict(project, "README.md", b"l", b"c", in_container=True, local_in_container=False)
    assert run_cli(["conflicts"]) == 0
    out = capsys.readouterr().out
    assert "2 unresolved conflict(s)" in out
    for text in ("src/app.py", "README.md", "6 B", "11 B", "still in the container", "saved as"):
        assert text in out, out
    assert max(len(line) for line in out.splitlines()[1:]) <= 80, out  # [0]: the tmp folder
    assert run_cli(["conflicts", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["conflicts"]
    assert [r["path"] for r in rows] == ["README.md", "src/app.py"]
    app = rows[1]
    assert app["local"]["size"] == 6 and app["local"]["in_container"] is True
    assert app["container"]["size"] == 11 and app["container"]["in_container"] is False
    assert Path(app["container"]["saved"]).read_bytes() == b"container!!"
    assert rows[0]["container"]["in_container"] is True


def test_resolve_selects_by_path_folder_glob_or_all(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("src/a.py", "src/b.py", "src/sub/c.py", "docs/d.md", "e.txt"):
        conflict(project, name, b"l " + name.encode(), b"c " + name.encode())

    def remaining() -> list[str]:
        return [r.path for r in store_of(project).records()]

    assert run_cli(["conflicts", "resolve", "src/*.py", "--keep", "local"]) == 0
    assert remaining() == ["docs/d.md", "e.txt"]  # fnmatch's * also crosses "/"
    assert run_cli(["conflicts", "resolve", "docs/", "--keep", "container"]) == 0
    assert (project / "docs" / "d.md").read_bytes() == b"c docs/d.md"
    assert run_cli(["conflicts", "resolve", str(project / "e.txt"), "--keep", "local"]) == 0
    assert remaining() == []
    conflict(project, "x", b"l", b"c")
    assert run_cli(["conflicts", "resolve", "--all", "--keep", "container"]) == 0
    assert remaining() == []
    out = capsys.readouterr().out
    assert "src/a.py: kept the local version" in out and "x: kept the container's" in out


USAGE = [
    (["conflicts", "resolve", "--keep", "local"], "podsync: conflicts resolve: pass PATH|GLOB"),
    (["conflicts", "resolve", "a", "--all", "--keep", "local"], "podsync: --all: pass either"),
    (["conflicts", "resolve", "nope.txt", "--keep", "local"], 'podsync: conflicts resolve: "nope'),
    (["conflicts", "resolve", "a.txt"], "podsync conflicts resolve: Missing option '--keep'"),
    (["conflicts", "resolve", "a.txt", "--keep", "both"], "podsync conflicts resolve: Invalid"),
]


@pytest.mark.parametrize(("argv", "start"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_resolve_usage_errors_are_one_line_exit_2_and_resolve_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], start: str
) -> None:
    record = conflict(project, "a.txt", b"l", b"c")
    assert run_cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    assert captured.err.startswith(start), captured.err
    assert store_of(project).records() == [record]


def test_status_sync_counts_unresolved_conflicts_per_sync(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = project / "other"
    other.mkdir()
    conflict(project, "a.txt", b"l", b"c")
    conflict(project, "b.txt", b"l", b"c")
    rows = [
        SyncStatus(name="sync-0", local=str(project), remote="r", agent="python", state="watching"),
        SyncStatus(name="sync-1", local=str(other), remote="r", agent="shell", state="watching"),
    ]
    write_status(status_path(project / ".devspace"), StatusFile(os.getpid(), "now", rows))
    assert run_cli(["status", "sync", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["conflicts"] for s in data["syncs"]] == [2, 0]
    assert data["unresolved_conflicts"] == 2
    assert run_cli(["conflicts", "resolve", "a.txt", "--keep", "local"]) == 0
    capsys.readouterr()
    assert run_cli(["status", "sync", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["syncs"][0]["conflicts"] == 1
    status_path(project / ".devspace").unlink()
    assert run_cli(["status", "sync"]) == 0
    assert "1 unresolved conflict(s): see `podsync conflicts`." in capsys.readouterr().out

"""Shell agent scans against a real busybox container: names, kinds, exec bit, pruning."""

from __future__ import annotations

import time

import pytest
from shell_helpers import Box, run

from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath
from podsync.errors import SafetyHalt

pytestmark = pytest.mark.docker

TREE = r"""
cd /app
mkdir -p "with space/inner" empty "uni-é漢字" deep/a/b/c
printf 'hello' > "with space/inner/file one.txt"
printf 'x' > "$(printf 'new\nline')"
printf 'uni' > "uni-é漢字/ñ.txt"
printf '#!/bin/sh\n' > run.sh && chmod 755 run.sh
printf 'ro' > plain.txt && chmod 644 plain.txt
printf 'deep' > deep/a/b/c/leaf
ln -s "with space/inner/file one.txt" good-link
ln -s ../../etc/passwd escaping-link
ln -s "$(printf 'odd\nt//x')" odd-link
touch -d @1600000000 plain.txt
mkfifo fifo
printf 'bad' > "$(printf 'bad\377name')"
printf 'bs' > 'back\slash'
"""


def test_scan_lists_every_kind_of_name_exactly(box: Box) -> None:
    box.sh(TREE)
    ep = box.endpoint()
    snap = run(ep.scan())
    assert snap[RelPath("with space")] == Entry(DIR)
    assert snap[RelPath("with space/inner")] == Entry(DIR)
    assert snap[RelPath("empty")] == Entry(DIR)
    assert snap[RelPath("with space/inner/file one.txt")].size == 5
    assert snap[RelPath("new\nline")].size == 1
    assert snap[RelPath("uni-é漢字/ñ.txt")].size == 3
    assert snap[RelPath("run.sh")].executable is True
    plain = snap[RelPath("plain.txt")]
    assert (plain.kind, plain.executable, plain.mtime_ns) == (FILE, False, 1600000000 * 10**9)
    assert snap[RelPath("deep/a/b/c/leaf")].size == 4
    assert snap[RelPath("good-link")] == Entry(LINK, target="with space/inner/file one.txt")
    assert snap[RelPath("odd-link")] == Entry(LINK, target="odd\nt//x")
    # never synced: links leaving the root, fifos, names that are not UTF-8 or have '\'
    for absent in ("escaping-link", "fifo", "back\\slash"):
        assert RelPath(absent) not in snap
    assert not [p for p in snap if p.startswith("bad")]
    warnings = "\n".join(ep.warnings)  # type: ignore[attr-defined]
    assert "escaping-link" in warnings and "leaves the sync folder" in warnings
    assert "not valid UTF-8" in warnings and "backslash" in warnings
    assert ep.mtime_granularity_ns == 10**9


def test_scan_under_lists_only_the_subtrees(box: Box) -> None:
    box.sh(TREE)
    ep = box.endpoint()
    snap = run(ep.scan([RelPath("deep/a"), RelPath("plain.txt"), RelPath("missing/x")]))
    assert sorted(snap) == ["deep/a", "deep/a/b", "deep/a/b/c", "deep/a/b/c/leaf", "plain.txt"]
    # the root hinted (the poll loop saw it change with its mtime kept): the whole tree
    assert run(ep.scan([RelPath(""), RelPath("deep")])) == run(ep.scan())


def test_excluded_dirs_are_pruned_inside_the_container(box: Box) -> None:
    # 5,000 files in an excluded dir: the container-side listing must not contain them.
    box.sh(
        "cd /app && mkdir -p node_modules/pkg src/node_modules build/out keep && "
        "cd node_modules/pkg && i=0; while [ $i -lt 5000 ]; do : > f$i; i=$((i+1)); done; "
        "cd /app && : > src/main.c && : > src/node_modules/x && : > build/out/o && : > keep/k"
        " && mkdir -p .devspace/logs && : > .devspace/logs/sync.log"
    )
    rules = Rules(["node_modules/", "/build"])
    ep = box.endpoint(rules)
    started = time.monotonic()
    raw = run(ep.listing())
    elapsed = time.monotonic() - started
    names = {r.name.decode() for r in raw}
    assert not [n for n in names if "node_modules/" in n or n.startswith(("./build/", "./.dev"))]
    assert len(names) < 20, f"{len(names)} records: pruning did not happen in the container"
    snap = run(ep.scan())
    assert sorted(snap) == ["keep", "keep/k", "src", "src/main.c"]
    assert elapsed < 5


def test_untranslatable_patterns_and_negations_are_filtered_exactly(box: Box) -> None:
    box.sh(
        "cd /app && mkdir -p logs/keep logs/drop a/x/b c && : > logs/keep/k && : > logs/drop/d"
        " && : > a/x/b/f && : > c/f.tmp && : > c/f.txt"
    )
    # 'logs/*' + '!logs/keep' re-includes logs/keep; 'a/*/b' has a glob find -path would get
    # wrong; '[c]/*.tmp' has a bracket: all three can only be decided client-side.
    rules = Rules(["logs/*", "!logs/keep", "a/*/b", "[c]/*.tmp"])
    ep = box.endpoint(rules)
    raw = {r.name.decode() for r in run(ep.listing())}
    assert "./logs/drop/d" in raw and "./a/x/b/f" in raw  # not pruned container-side
    snap = run(ep.scan())
    assert sorted(snap) == ["a", "a/x", "c", "c/f.txt", "logs", "logs/keep", "logs/keep/k"]


def test_a_vanished_root_halts_instead_of_looking_empty(box: Box) -> None:
    ep = box.endpoint(root="/app/gone")
    with pytest.raises(SafetyHalt, match="gone"):
        run(ep.scan())


def test_scan_of_10k_files_is_one_exec_and_fast(box: Box) -> None:
    box.sh(
        "cd /app && d=0; while [ $d -lt 100 ]; do mkdir d$d; f=0; while [ $f -lt 100 ]; do "
        ": > d$d/file-$f.txt; f=$((f+1)); done; d=$((d+1)); done"
    )
    ep = box.endpoint()
    run(ep.scan())
    started = time.monotonic()
    snap = run(ep.scan())
    elapsed = time.monotonic() - started
    assert len(snap) == 10_100
    print(f"shell agent: scan of 10,100 entries via docker exec took {elapsed * 1000:.0f} ms")
    assert elapsed < 5


def test_scan_under_thousands_of_paths_falls_back_to_one_listing(box: Box) -> None:
    box.sh(
        "cd /app && mkdir -p other && : > other/x && i=0; while [ $i -lt 3000 ]; do "
        ": > a-rather-long-file-name-to-fill-the-command-line-$i.txt; i=$((i+1)); done"
    )
    names = [
        RelPath(f"a-rather-long-file-name-to-fill-the-command-line-{i}.txt") for i in range(3000)
    ]
    ep = box.endpoint()
    snap = run(ep.scan([*names, RelPath("missing")]))
    assert sorted(snap) == sorted(names)  # 'other' was listed but not asked for

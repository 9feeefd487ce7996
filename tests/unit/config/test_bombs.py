"""Hostile devspace.yaml shapes (alias bombs, loops, deep nesting, huge files): each is one
config error line ``FILE:LINE:COL: OPTION: ...`` with exit 2, fast and in little memory,
through the real CLI (``podsync list sync`` and ``podsync add sync``) in a subprocess.

The subprocess runs under an address-space limit (so the old behaviour, minutes and
gigabytes, fails the test instead of the machine) and a generous wall-clock deadline; its
peak RSS comes from ``os.wait4``. The 1 s bound is asserted in-process on the CPU time of
loading the file (interpreter start-up and the machine's load do not count).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from podsync.config import load_text
from podsync.config.bounds import MAX_CHARS, MAX_DEPTH, MAX_NODES
from podsync.errors import ConfigError

HEAD = "images:\n  app:\n    image: a\n"
#: Wall-clock deadline for a whole CLI run (start-up included) on a loaded 2-core machine.
CLI_DEADLINE_S = 20.0
#: What the CLI may reach at its peak; the unfixed bombs went past 1.5 GB.
MAX_RSS_MB = 300
ADDRESS_SPACE_LIMIT = 2 << 30


def laughs(levels: int, fanout: int, where: str = "excludePaths") -> str:
    """``levels`` anchors, each a list of ``fanout`` aliases of the previous one, the last
    used as the exclude list: fanout**levels values in a few hundred bytes."""
    lines = [HEAD + "x:", '  l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fanout) + "]")
    lines += ["dev:", "  sync:", "  - imageName: app", f"    {where}: *l{levels}"]
    return "\n".join(lines) + "\n"


def merge_bomb() -> str:
    """The same growth through merge keys (mappings) instead of lists."""
    lines = [HEAD + "x:", "  m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
    for i in range(1, 10):
        keys = ", ".join(f"k{j}: *m{i - 1}" for j in range(9))
        lines.append(f"  m{i}: &m{i} {{{keys}}}")
    lines += ["dev:", "  sync:", "  - imageName: app", "    labelSelector:", "      <<: *m9"]
    return "\n".join(lines) + "\n"


class Bomb(NamedTuple):
    what: str
    text: str
    line: int
    option: str
    fragment: str


LOOP = HEAD + "dev: &d\n  sync:\n  - imageName: app\n    x: *d\n"
DEEP_FLOW = HEAD + "dev: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_BLOCK = HEAD + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n"
HUGE = HEAD + "# " + "x" * (2 * MAX_CHARS) + "\n"
MANY = (
    HEAD
    + "dev:\n  sync:\n  - imageName: app\n    excludePaths:\n"
    + "".join(f"    - p{i}\n" for i in range(MAX_NODES + 10))
)

BOMBS = [
    Bomb("9 levels x 9 aliases", laughs(9, 9), 9, "x.l4[", "alias bomb"),
    Bomb("billion laughs (10 x 10)", laughs(10, 10), 9, "x.l4[", "alias bomb"),
    Bomb("merge-key bomb", merge_bomb(), 8, "x.m3.", "alias bomb"),
    Bomb("alias loop", LOOP, 7, "dev.sync[0].x", "loop"),
    Bomb("deep flow nesting", DEEP_FLOW, 4, "dev" + "[0]" * (MAX_DEPTH - 1), "levels deep"),
    Bomb("deep block nesting", DEEP_BLOCK, MAX_DEPTH + 4, "k0.k1.", "levels deep"),
    Bomb("huge file", HUGE, 1, "(top level)", "K characters"),
    Bomb("many values", MANY, 0, "dev.sync[0].excludePaths[", "more than"),
]


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def _run_cli(args: list[str], cwd: Path) -> tuple[int, str]:
    """(exit code, stderr) of ``python -m podsync ARGS``, within CLI_DEADLINE_S."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "podsync", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_limit_memory,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        _, stderr = proc.communicate(timeout=CLI_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"podsync {' '.join(args)} ran past {CLI_DEADLINE_S} s") from None
    return proc.returncode, stderr.decode("utf-8", "replace")


def _peak_rss_mb(args: list[str], cwd: Path) -> float:
    """Peak RSS of ``python -m podsync ARGS`` (os.wait4 gives this child's own rusage)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "podsync", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_limit_memory,
    )
    deadline = time.monotonic() + CLI_DEADLINE_S
    while time.monotonic() < deadline:
        pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = 0  # reaped here; keep Popen from waiting again
            return usage.ru_maxrss / 1024
        time.sleep(0.02)
    proc.kill()
    os.wait4(proc.pid, 0)
    proc.returncode = -9
    raise AssertionError(f"podsync {' '.join(args)} ran past {CLI_DEADLINE_S} s")


def _check_line(stderr: str, bomb: Bomb, display: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    found = re.match(rf"^{re.escape(display)}:(\d+):(\d+): (.+?): (.*)$", lines[0])
    assert found, lines[0]
    if bomb.line:
        assert int(found.group(1)) == bomb.line, lines[0]
    assert found.group(3).startswith(bomb.option), lines[0]
    assert bomb.fragment in found.group(4), lines[0]


@pytest.mark.parametrize("bomb", BOMBS, ids=[b.what for b in BOMBS])
def test_in_process_one_error_within_a_second(tmp_path: Path, bomb: Bomb) -> None:
    started = time.process_time()
    with pytest.raises(ConfigError) as caught:
        load_text(bomb.text, tmp_path / "devspace.yaml", "devspace.yaml")
    assert time.process_time() - started < 1.0
    _check_line(str(caught.value), bomb, "devspace.yaml")


@pytest.mark.parametrize("bomb", BOMBS, ids=[b.what for b in BOMBS])
def test_cli_list_and_add_sync_exit_2_with_one_line(tmp_path: Path, bomb: Bomb) -> None:
    config = tmp_path / "devspace.yaml"
    config.write_text(bomb.text)
    code, stderr = _run_cli(["list", "sync"], tmp_path)
    assert code == 2, stderr
    _check_line(stderr, bomb, "devspace.yaml")
    add = ["add", "sync", "--local", ".", "--container", "/app", "--config", str(config)]
    code, stderr = _run_cli(add, tmp_path)
    assert code == 2, stderr
    _check_line(stderr, bomb, "devspace.yaml")  # named relative to the cwd
    assert config.read_text() == bomb.text  # the editor wrote nothing


def test_cli_peak_memory_stays_small_on_the_worst_bomb(tmp_path: Path) -> None:
    (tmp_path / "devspace.yaml").write_text(laughs(10, 10))
    assert _peak_rss_mb(["list", "sync"], tmp_path) < MAX_RSS_MB


ANCHORS_IN_USE = (
    HEAD
    + """\
x-defaults: &defaults
  imageName: app
  excludePaths: &common [node_modules/, .git/, "*.log"]
dev:
  sync:
  - <<: *defaults
    localSubPath: ./src
    containerPath: /app/src
  - <<: *defaults
    localSubPath: ./lib
    containerPath: /app/lib
    downloadExcludePaths: *common
"""
)


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "lib").mkdir()
    cfg = load_text(ANCHORS_IN_USE, tmp_path / "devspace.yaml", "devspace.yaml")
    assert [s.local_sub_path for s in cfg.sync] == ["./src", "./lib"]
    assert list(cfg.sync[1].download_exclude_paths) == ["node_modules/", ".git/", "*.log"]

"""Differential tests: our gitignore Matcher against the real git binary.

Every case is a real repository in ``tmp_path`` whose root ``.gitignore`` holds the patterns,
over a tree of real files and directories. Cases: hypothesis-generated pattern lists (literals,
``*``, ``?``, ``**``, classes, escapes, ``!``, leading/trailing ``/``, trailing spaces,
malformed brackets; many derived from the tree's own paths so they match often) over random
trees and over one dense tree; every byte value against classes, ranges and ``?``; a table
of hand-picked tricky cases. git is asked two ways:

1. ``git check-ignore --no-index --stdin -z --verbose --non-matching`` for every file AND
   every directory, compared with ``Matcher.matches(path, is_dir)``. Verified on git 2.39:
   check-ignore applies the parent rule (``foo/bar`` is reported through ``foo/`` even with
   ``!foo/bar`` after it) because it evaluates every leading directory first, so it gives the
   full semantics. Directories are asked WITHOUT a trailing slash: git then lstat()s them and
   sees a directory, exactly as when it lists files. With a trailing slash git matches the
   literal string "dir/" (``x/a**`` then wins over a later ``!x/a``), which is not what a
   listing does, so that form would compare against the wrong thing.
2. ``git ls-files -z --others --exclude-standard``: the untracked files git really lists (it
   never descends into an excluded directory), compared with the files we do not exclude.

Never-matching patterns that ``Matcher.compile`` rejects are compiled here with
``compile_unchecked`` (git keeps them and they match nothing), so the generator may produce
them; a separate test checks that git indeed never matches what ``validate_pattern`` rejects.

Size: ``PODSYNC_GIT_DIFF_EXAMPLES`` random-tree examples and twice as many dense-tree ones
(default 300, about 30 s here), derandomized so CI is stable; set ``PODSYNC_GIT_DIFF_SEED`` to
an integer to explore other examples.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from podsync.core.excludes import Matcher, validate_pattern

T = TypeVar("T", bound=Callable[..., object])
GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

EXAMPLES = int(os.environ.get("PODSYNC_GIT_DIFF_EXAMPLES", "300"))
SEED = os.environ.get("PODSYNC_GIT_DIFF_SEED")
SETTINGS = settings(
    deadline=None,
    derandomize=SEED is None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _seeded(test: T) -> T:
    return seed(int(SEED))(test) if SEED is not None else test


# Names on disk: the common ones are drawn twice as often as the exotic ones.
COMMON_NAMES = ["a", "b", "ab", "ba", "a.c", "é"]
EXOTIC_NAMES = ["[a]", "*", "a b", "!x", "#x", "a\\b", "x", "?", "a*", "-", ".h", "ab "]
NAME = st.one_of(
    st.sampled_from(COMMON_NAMES), st.sampled_from(COMMON_NAMES), st.sampled_from(EXOTIC_NAMES)
)

# Free-standing pattern parts (for patterns not derived from a path of the tree).
ATOMS = [
    "a", "b", "ab", "x", "*", "?", "**", "a*", "a**", "*b", "**b", "[ab]", "é?", "a?b", "*.c",
    "?b", "[!a]", "[^a]", "[a-b]", "[]a]", "[[:alpha:]]", "[[:punct:]]", "\\[a]", "\\*",
    "\\!x", "\\#x", "#x", "!x", "a\\", "[a", ".", "a b", "a\\ ", "??", "*a*", "***", "[é]",
    "\\a", "[!]]", "[b-a]", "[a-]", "[[:foo:]]", "[[:a]", "\\?", "[\\]]", "a\\*", "",
    "a\\/b",
]  # fmt: skip


def _escape(name: str) -> str:
    return "".join("\\" + c if c in "*?[\\" else c for c in name)


def _variants(name: str) -> list[str]:
    """Pattern segments that match ``name`` (or nearly do)."""
    first, last, rest = name[0], name[-1], name[1:]
    return [
        _escape(name), "*", "**", "?" * len(name.encode()), "?" * len(name), first + "*",
        "*" + last, first + "**", "**" + last, f"[{first}z]{rest}", f"[!{first}]{rest}",
        f"[!z]{rest}", f"[[:alpha:]]{rest}", name + "*", "*" + name + "*", name[:-1] + "?",
        name + "/**", "**/" + name,
    ]  # fmt: skip


@st.composite
def _pattern(draw: st.DrawFn, paths: list[str]) -> str:
    if draw(st.booleans()):  # derived from a path of the tree, so it often matches
        parts = draw(st.sampled_from(paths)).split("/")
        parts = parts[draw(st.integers(0, len(parts) - 1)) :]
        segments = [
            draw(st.one_of(st.just(part), st.just(part), st.sampled_from(_variants(part))))
            for part in parts
        ]
        if draw(st.integers(0, 3)) == 0:
            segments.insert(draw(st.integers(0, len(segments))), "**")
    else:
        segments = draw(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=3))
    return (
        ("!" if draw(st.integers(0, 2)) == 0 else "")
        + ("/" if draw(st.integers(0, 3)) == 0 else "")
        + "/".join(segments)
        + ("/" if draw(st.integers(0, 3)) == 0 else "")
        + draw(st.sampled_from(["", "", "", "", "", " ", "  ", "\\ "]))
    )


def _tree() -> st.SearchStrategy[dict[str, bool]]:
    """A tree as {path: is_dir}; every ancestor of a path is a directory."""
    leaves = st.lists(
        st.tuples(st.lists(NAME, min_size=1, max_size=4), st.booleans()), min_size=1, max_size=12
    )

    def build(items: list[tuple[list[str], bool]]) -> dict[str, bool]:
        tree: dict[str, bool] = {}
        for parts, is_dir in items:
            for i in range(1, len(parts)):
                tree["/".join(parts[:i])] = True
            path = "/".join(parts)
            tree[path] = tree.get(path, False) or is_dir
        for path in list(tree):  # a path that is a parent of another must be a directory
            head = path.rpartition("/")[0]
            if head:
                tree[head] = True
        return tree

    return leaves.map(build)


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[str], dict[str, bool]]:
    tree = draw(_tree())
    patterns = draw(st.lists(_pattern(sorted(tree)), min_size=1, max_size=5))
    return patterns, tree


def _git(repo: Path, *args: str, stdin: bytes = b"") -> bytes:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo.parent),
        "XDG_CONFIG_HOME": str(repo.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }
    done = subprocess.run(
        [GIT or "git", "-C", str(repo), *args], input=stdin, capture_output=True, env=env,
        check=False, timeout=30,
    )  # fmt: skip
    # check-ignore exits 1 when nothing is ignored; anything else is a real failure.
    assert done.returncode in (0, 1), done.stderr.decode(errors="replace")
    return done.stdout


class GitRepo:
    """One scratch repository reused across examples (only its work tree is reset)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree: dict[str, bool] = {}
        root.mkdir()
        _git(root, "init", "-q", "--template=")

    def reset(self, patterns: list[str], tree: dict[str, bool]) -> None:
        """Write ``patterns`` as the root .gitignore; rebuild the work tree if it changed."""
        (self.root / ".gitignore").write_bytes("\n".join([*patterns, ""]).encode())
        if tree == self.tree:
            return
        for child in self.root.iterdir():
            if child.name == ".git":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        (self.root / ".gitignore").write_bytes("\n".join([*patterns, ""]).encode())
        self.tree = dict(tree)
        for path, is_dir in sorted(tree.items()):
            target = self.root / path
            if is_dir:
                target.mkdir()
            else:
                target.write_bytes(b"")

    def check_ignore(self, paths: list[str]) -> dict[str, bool]:
        """{path: ignored} from ``git check-ignore``; a matching '!' pattern means not."""
        data = b"".join(os.fsencode(p) + b"\0" for p in paths)
        out = _git(
            self.root, "check-ignore", "--no-index", "--stdin", "-z", "--verbose",
            "--non-matching", stdin=data,
        )  # fmt: skip
        fields = out.split(b"\0")[:-1]
        assert len(fields) == 4 * len(paths), fields
        result: dict[str, bool] = {}
        for i in range(0, len(fields), 4):
            _source, _line, pattern, path = fields[i : i + 4]
            result[os.fsdecode(path)] = bool(pattern) and not pattern.startswith(b"!")
        return result

    def listed_files(self) -> set[str]:
        out = _git(self.root, "ls-files", "-z", "--others", "--exclude-standard")
        return {os.fsdecode(p) for p in out.split(b"\0") if p} - {".gitignore"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    return GitRepo(tmp_path_factory.mktemp("gitdiff") / "repo")


def _differences(repo: GitRepo, patterns: list[str], tree: dict[str, bool]) -> list[str]:
    matcher = Matcher.compile_unchecked(patterns)
    repo.reset(patterns, tree)
    git = repo.check_ignore(sorted(tree))
    problems = [
        f"{path!r} (dir={is_dir}): git ignored={git[path]}, we={not git[path]}"
        for path, is_dir in sorted(tree.items())
        if matcher.matches(path, is_dir) != git[path]
    ]
    ours = {p for p, d in tree.items() if not d and not matcher.matches(p, False)}
    listed = repo.listed_files()
    if listed != ours:
        problems.append(
            f"ls-files only: {sorted(listed - ours)}, ours only: {sorted(ours - listed)}"
        )
    return problems


@_seeded
@settings(SETTINGS, max_examples=EXAMPLES)
@given(case=_case())
def test_random_trees_agree_with_git(
    repo: GitRepo, case: tuple[list[str], dict[str, bool]]
) -> None:
    """Random trees (files and directories of the same names), patterns mostly derived from
    the tree's own paths so that they match often."""
    patterns, tree = case
    assert _differences(repo, patterns, tree) == [], patterns


def _dense_tree() -> dict[str, bool]:
    """Every combination of a few names down to depth 3 (~60 entries), built once."""
    tree: dict[str, bool] = {}
    levels = [
        (["a", "ab", "b", "é"], ["ba", "a.c", "x", "[a]"]),
        (["a", "b"], ["ab", "ba", "é", "b.c"]),
        ([], ["a", "b", "ab"]),
    ]
    parents = [""]
    for dirs, files in levels:
        children = []
        for parent in parents:
            for name in dirs + files:
                path = f"{parent}/{name}" if parent else name
                tree[path] = name in dirs
                if name in dirs:
                    children.append(path)
        parents = children
    return tree


DENSE_TREE = _dense_tree()
DENSE_PATHS = sorted(DENSE_TREE)


@_seeded
@settings(SETTINGS, max_examples=2 * EXAMPLES)
@given(patterns=st.lists(_pattern(DENSE_PATHS), min_size=1, max_size=6))
def test_dense_tree_agrees_with_git(repo: GitRepo, patterns: list[str]) -> None:
    """One dense tree (only the .gitignore changes between examples, so this is cheap and
    every pattern meets many paths)."""
    assert _differences(repo, patterns, DENSE_TREE) == [], patterns


# Hand-picked cases, each verified to tell apart a plausible wrong implementation.
TRICKY = [
    # git compares the literal prefix itself, so '**' right after it counts as "at start".
    (["a**/b"], {"ab": False, "a": True, "a/b": False, "ax": True, "ax/y": True, "ax/y/b": False}),
    (["/a**", "!a"], {"a": True, "a/b": True, "a/b/c": False, "a/c": False}),
    (["b/a**", "!b/a"], {"b": True, "b/a": True, "b/a/x": True, "b/a/x/y": False}),
    # '**' after a wildcard segment still needs the '/' before it.
    (["*/**/b"], {"a": True, "a/b": False, "a/x": True, "a/x/y": True, "a/x/y/b": False}),
    (["*/x**/b"], {"a": True, "a/xb": False, "a/x": True, "a/x/b": False}),
    (["a**b/c"], {"ab": True, "ab/c": False, "a": True, "a/b": True, "a/b/c": False}),
    # ... and with zero directories the text after 'a**/' continues the segment of 'a'.
    (["a**//x", "b**/./x"], {"a": True, "a/x": False, "b.": True, "b./x": False}),
    (["/a/a/", "!/a/a**//"], {"a": True, "a/a": True, "a/a/b": False}),
    # '?' and classes never match '/'.
    (["/a?b", "a[/]b", "a[!x]b"], {"a": True, "a/b": False, "axb": False, "ayb": False}),
    (["[^a]", "![!b]"], {"a": False, "b": False, "c": False}),
    # '**/' means zero or more directories; '**\/' needs at least the slash.
    (["**/a", "x/**\\/b"], {"a": False, "x": True, "x/b": False, "x/y": True, "x/y/b": False}),
    # Negation cannot reach below an excluded directory, but works below 'dir/**'.
    (["d/", "!d/f"], {"d": True, "d/f": False}),
    (["d/**", "!d/f", "!d/e/"], {"d": True, "d/f": False, "d/e": True, "d/e/g": False}),
    # Trailing-space handling and escapes.
    (["a\\ ", "b ", "\\#c", "\\!d"], {"a ": False, "b": False, "#c": False, "!d": False}),
]


@pytest.mark.parametrize(("patterns", "tree"), TRICKY)
def test_tricky_cases_agree_with_git(
    repo: GitRepo, patterns: list[str], tree: dict[str, bool]
) -> None:
    assert _differences(repo, patterns, tree) == []


# Every byte a file name can hold (except '/'), each as the second byte of a two-byte name.
BYTE_NAMES = [os.fsdecode(b"x" + bytes([c])) for c in range(1, 256) if c != ord("/")]
CLASS_PATTERNS = [
    *(f"x[[:{c}:]]" for c in (
        "alnum", "alpha", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
        "space", "upper", "xdigit",
    )),
    "x?", "x*", "x[!a-z]", "x[^[:alnum:]]", "x[]-a]", "x[\\]-a]", "x[a-c-e]", "x[[:digit:]-z]",
    "x[---]", "x[!]]", "x[[:x]", "x[[]", "x\\\\", "x[\\\\]", "x[é]", "x\xe9", "x[\x80-\xff]",
]  # fmt: skip


@pytest.mark.parametrize("pattern", CLASS_PATTERNS)
def test_classes_and_bytes_agree_with_git(repo: GitRepo, pattern: str) -> None:
    """Character classes, ranges and '?' over every single byte, non-UTF-8 names included."""
    tree = dict.fromkeys(BYTE_NAMES, False)
    assert _differences(repo, [pattern], tree) == []


REJECTED = [
    "!", "/", "!/", "! ", "a\\", "a/b\\", "[a", "a[b-", "[!]", "[]", "x[[:foo:]]", "[[:alpha:]",
    "a//b", "a//", "//a", "**//a", "x/**//", "./a", "a/./b", "a/..", ".", "..", "/.", "*/../a",
    "[\\",
    "\\", "a\\/",
]  # fmt: skip
REJECTED_TREE = {
    name: False
    for name in ["a", "b", "ab", ".a", "[a", "[", "]", "a\\", "\\", "!", "x:", "a-b", "xf"]
} | {"e": True, "e/b": False, "e/a": False, "d": True, "d/a": False, "d/..x": False}


@pytest.mark.parametrize("pattern", REJECTED)
def test_rejected_patterns_never_match_in_git(repo: GitRepo, pattern: str) -> None:
    """What validate_pattern rejects is accepted by git but matches nothing, so rejecting it
    loses no behaviour (as a plain and as a negated pattern after a match-all)."""
    assert validate_pattern(pattern) is not None
    repo.reset([pattern], REJECTED_TREE)
    assert not any(repo.check_ignore(sorted(REJECTED_TREE)).values())
    repo.reset(["*", pattern if pattern.startswith("!") else "!" + pattern], REJECTED_TREE)
    assert all(repo.check_ignore(sorted(REJECTED_TREE)).values())


def _table_rows() -> list[tuple[str, list[str], str, bool, bool]]:
    """The described rows of test_excludes.py (loaded by path: tests are not a package)."""
    spec = importlib.util.spec_from_file_location(
        "_excludes_rows", Path(__file__).with_name("test_excludes.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [tuple(row) for row in module.ROWS if row.path]


@pytest.mark.parametrize("row", _table_rows(), ids=lambda row: str(row[0]))
def test_table_rows_are_what_git_says(
    repo: GitRepo, row: tuple[str, list[str], str, bool, bool]
) -> None:
    _why, patterns, path, is_dir, expected = row
    parts = path.split("/")
    tree = {"/".join(parts[:i]): True for i in range(1, len(parts))} | {path: is_dir}
    repo.reset(patterns, tree)
    assert repo.check_ignore([path]) == {path: expected}

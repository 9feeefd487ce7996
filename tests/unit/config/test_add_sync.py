"""``podsync add sync`` edits devspace.yaml in place: the diff is exactly the new entry, comments
and layout elsewhere are byte-identical, duplicates are refused, the write is atomic."""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from podsync.cli.app import run_cli
from podsync.config import add_sync, load_config
from podsync.errors import ConfigError, UsageError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "app.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def changes(before: str, after: str) -> tuple[list[str], str]:
    """(lines the edit removed or changed, text of the lines it added), per difflib."""
    diff = list(difflib.ndiff(before.splitlines(True), after.splitlines(True)))
    removed = [d[2:] for d in diff if d.startswith("- ")]
    return removed, "".join(d[2:] for d in diff if d.startswith("+ "))


@dataclass(frozen=True)
class Case:
    id: str
    before: str
    added: str  # exactly the lines add_sync must add
    selector: dict[str, str] | None = None
    removed: tuple[str, ...] = ()  # lines that cannot stay as they were (see the case)


ENTRY_0 = (
    "  - imageName: backend\n    localSubPath: src\n    containerPath: /app/src\n"
    "    excludePaths:\n    - node_modules/\n    - '*.log'\n"
)

CASES = [
    Case(
        "append-to-existing-sync-with-comments",
        "# project comment\n"
        "version: v1beta9   # keep me\n"
        "images:\n"
        "  backend:\n"
        "    image: john/devbackend  # trailing\n"
        "dev:\n"
        "  ports:\n"
        "  - imageName: backend\n"
        "    forward:\n"
        "    - port: 8080\n"
        "  sync:\n"
        "  - imageName: backend\n"
        "    containerPath: /other   # first entry\n"
        "\n"
        "  # a comment about open\n"
        "  open:\n"
        "  - url: http://localhost:8080\n"
        "profiles: []\n",
        ENTRY_0,
    ),
    Case(
        "dev-absent-four-space-indent",
        "images:\n    backend:\n        image: x\n",
        "dev:\n    sync:\n    - imageName: backend\n      localSubPath: src\n"
        "      containerPath: /app/src\n      excludePaths:\n      - node_modules/\n"
        "      - '*.log'\n",
    ),
    Case(
        "dev-without-sync",
        "images:\n  backend:\n    image: x\ndev:\n  ports:\n  - imageName: backend\n"
        "    forward: [{port: 1}]\n# end of file comment\n",
        "  sync:\n" + ENTRY_0,
    ),
    Case(
        "empty-flow-sync",
        "images:\n  backend:\n    image: x\ndev:\n  sync: []\n",
        "  sync:\n" + ENTRY_0,
        removed=("  sync: []\n",),  # the flow "[]" has to become a block list
    ),
    Case(
        "indented-dash-style",
        "images:\n  backend:\n    image: x\ndev:\n  sync:\n    - imageName: backend\n"
        "      excludePaths:\n        - tmp/\n",
        "    - imageName: backend\n      localSubPath: src\n      containerPath: /app/src\n"
        "      excludePaths:\n        - node_modules/\n        - '*.log'\n",
    ),
    Case(
        "empty-file-with-label-selector",
        "",
        "dev:\n  sync:\n  - labelSelector:\n      app.kubernetes.io/name: web\n"
        "      release: '1'\n    localSubPath: src\n    containerPath: /app/src\n"
        "    excludePaths:\n    - node_modules/\n    - '*.log'\n",
        {"app.kubernetes.io/name": "web", "release": "1"},
    ),
    Case(
        "windows-line-endings",
        "images:\r\n  backend:\r\n    image: x\r\ndev:\r\n  sync:\r\n  - imageName: backend\r\n",
        ENTRY_0.replace("\n", "\r\n"),
    ),
    Case(
        "no-final-newline",
        "images:\n  backend:\n    image: x\ndev:\n  sync:\n  - imageName: backend",
        "  - imageName: backend\n" + ENTRY_0,
        removed=("  - imageName: backend",),  # only gains its missing newline
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_diff_is_only_the_new_entry(project: Path, case: Case) -> None:
    path = project / "devspace.yaml"
    path.write_text(case.before)
    add_sync(Path("devspace.yaml"), "src", "/app/src", ["node_modules/", "*.log"], case.selector)
    removed, added = changes(case.before, path.read_bytes().decode())
    assert (removed, added) == (list(case.removed), case.added)
    cfg = load_config(path)
    last = cfg.sync[-1]
    assert (last.local_sub_path, last.container_path) == ("src", "/app/src")
    assert last.exclude_paths == ["node_modules/", "*.log"]
    assert last.label_selector == case.selector


def test_flow_sync_with_items_is_refused_untouched(project: Path) -> None:
    text = "images:\n  b:\n    image: x\ndev:\n  sync: [{imageName: b}]\n"
    (project / "devspace.yaml").write_text(text)
    with pytest.raises(ConfigError, match="flow style"):
        add_sync(Path("devspace.yaml"), "src", "/app", [], None)
    assert (project / "devspace.yaml").read_text() == text


def test_duplicate_is_refused(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        "images:\n  b:\n    image: x\ndev:\n  sync:\n  - imageName: b\n"
        "    localSubPath: ./src/\n    containerPath: /app/\n"
    )
    (project / "devspace.yaml").write_text(text)
    code = run_cli(["add", "sync", "--local=src", "--container=/app"])
    assert code == 2
    assert capsys.readouterr().err == (
        "devspace.yaml:6:5: dev.sync[0]: already syncs ./src/ with /app/ for this container; "
        "edit that entry instead of adding another\n"
    )
    assert (project / "devspace.yaml").read_text() == text


def test_other_selector_is_not_a_duplicate(project: Path) -> None:
    (project / "devspace.yaml").write_text(
        "dev:\n  sync:\n  - labelSelector: {app: a}\n"
        "    localSubPath: src\n    containerPath: /app\n"
    )
    add_sync(Path("devspace.yaml"), "src", "/app", [], {"app": "b"})
    assert len(load_config(Path("devspace.yaml")).sync) == 2


def test_file_mode_is_kept_and_no_temp_file_left(project: Path) -> None:
    path = project / "devspace.yaml"
    path.write_text("images:\n  b:\n    image: x\n")
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    add_sync(path, "src", "/app", [], None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert sorted(p.name for p in project.iterdir()) == ["app.py", "devspace.yaml", "src"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--local=nope", "--container=/app"],
            'podsync: --local: folder "nope" does not exist next to devspace.yaml; '
            "create it or fix the path",
        ),
        (
            ["--local=src", "--container=app"],
            'podsync: --container: "app" is not an absolute path; write the full container '
            "path, e.g. /app",
        ),
        (
            ["--local=src", "--container=/app", "--label-selector=app"],
            'podsync: --label-selector: "app" is not key=value; write e.g. app=web,tier=api',
        ),
        (
            ["--local=src", "--container=/app"],
            "podsync: --label-selector: required because devspace.yaml cannot pick the "
            "container by image (it defines 2 images); pass --label-selector app=NAME",
        ),
    ],
)
def test_bad_arguments_leave_file_untouched(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    text = "images:\n  a:\n    image: x\n  b:\n    image: y\n"
    (project / "devspace.yaml").write_text(text)
    assert run_cli(["add", "sync", *args]) == 2
    assert capsys.readouterr().err == message + "\n"
    assert (project / "devspace.yaml").read_text() == text


def test_invalid_file_is_reported_not_edited(project: Path) -> None:
    text = "dev:\n  sync:\n  - labelSelector: {app: a}\n    typo: 1\n"
    (project / "devspace.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"^devspace.yaml:4:5: dev.sync\[0\].typo: unknown"):
        add_sync(Path("devspace.yaml"), "src", "/app", [], {"app": "b"})
    assert (project / "devspace.yaml").read_text() == text


def test_cli_success_message_and_comma_excludes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "devspace.yaml").write_text("images:\n  b:\n    image: x\n")
    code = run_cli(
        ["add", "sync", "--local=src", "--container=/app", "--exclude=a/,b", "--exclude=c"]
    )
    assert code == 0
    assert "Added a sync from src to /app" in capsys.readouterr().out
    assert load_config(Path("devspace.yaml")).sync[0].exclude_paths == ["a/", "b", "c"]


def test_bad_exclude_is_a_usage_error(project: Path) -> None:
    (project / "devspace.yaml").write_text("images:\n  b:\n    image: x\n")
    with pytest.raises(UsageError, match=r'^--exclude: invalid exclude pattern "!"'):
        add_sync(Path("devspace.yaml"), "src", "/app", ["!"], None)


def test_absolute_local_path_is_stored_relative(project: Path) -> None:
    (project / "devspace.yaml").write_text("images:\n  b:\n    image: x\n")
    add_sync(Path("devspace.yaml"), str(project / "src"), "/app", [], None)
    add_sync(Path("devspace.yaml"), str(project), "/root", [], None)
    cfg = load_config(Path("devspace.yaml"))
    assert [e.local_sub_path for e in cfg.sync] == ["src", "./"]

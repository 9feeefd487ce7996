"""``dev.sync[*].onUpload.exec``: a table of invalid values, each one exact line with
file:line:col (exit 2 through the CLI), and the valid shapes with what they become (the
commands of the entry, ``./`` anchored at the sync root)."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podsync.cli.app import run_cli
from podsync.config import load_text
from podsync.errors import ConfigError

HEAD = "dev:\n  sync:\n  - labelSelector: {app: web}\n"


def with_on_upload(block: str) -> str:
    """An entry whose onUpload is ``block`` (indented under ``onUpload:``, line 4 col 5)."""
    return HEAD + "    onUpload:" + block


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    message: str  # the whole stderr line, without the trailing newline


P = "devspace.yaml"
BAD = [
    Bad(
        "onUpload-not-a-mapping",
        with_on_upload(" npm install\n"),
        f"{P}:4:15: dev.sync[0].onUpload: expected a mapping (key: value lines), "
        'got the string "npm install"',
    ),
    Bad(
        "onUpload-a-list",
        with_on_upload("\n    - command: npm install\n"),
        f"{P}:5:5: dev.sync[0].onUpload: expected a mapping (key: value lines), got a list",
    ),
    Bad(
        "exec-not-a-list",
        with_on_upload("\n      exec: npm install\n"),
        f'{P}:5:13: dev.sync[0].onUpload.exec: expected a list (one "- item" per line), '
        'got the string "npm install"; write each command as an item: - command: npm install',
    ),
    Bad(
        "exec-item-a-string",
        with_on_upload("\n      exec:\n      - npm install\n"),
        f"{P}:6:9: dev.sync[0].onUpload.exec[0]: expected a mapping (key: value lines), "
        'got the string "npm install"; write it as: - command: npm install',
    ),
    Bad(
        "item-without-command",
        with_on_upload("\n      exec:\n      - onChange: [package.json]\n"),
        f'{P}:6:9: dev.sync[0].onUpload.exec[0]: required option "command" is missing; '
        "add it, e.g. command: npm install",
    ),
    Bad(
        "command-empty",
        with_on_upload('\n      exec:\n      - command: ""\n'),
        f"{P}:6:18: dev.sync[0].onUpload.exec[0].command: is empty; write the command to run "
        "in the container, e.g. command: npm install",
    ),
    Bad(
        "command-a-number",
        with_on_upload("\n      exec:\n      - command: 42\n"),
        f"{P}:6:18: dev.sync[0].onUpload.exec[0].command: expected a string, got the number 42;"
        " write it in quotes",
    ),
    Bad(
        "command-with-nul",
        with_on_upload('\n      exec:\n      - command: "npm\\0 install"\n'),
        f"{P}:6:18: dev.sync[0].onUpload.exec[0].command: contains a NUL character; remove it",
    ),
    Bad(
        "onChange-a-string",
        with_on_upload(
            "\n      exec:\n      - command: npm install\n        onChange: package.json\n"
        ),
        f'{P}:7:19: dev.sync[0].onUpload.exec[0].onChange: expected a list (one "- item" per '
        'line), got the string "package.json"; write it as a list: ["package.json"]',
    ),
    Bad(
        "onChange-item-a-number",
        with_on_upload("\n      exec:\n      - command: make\n        onChange: [1]\n"),
        f"{P}:7:20: dev.sync[0].onUpload.exec[0].onChange[0]: expected a string, "
        "got the number 1; write it in quotes",
    ),
    Bad(
        "onChange-empty-list",
        with_on_upload("\n      exec:\n      - command: make\n        onChange: []\n"),
        f"{P}:7:19: dev.sync[0].onUpload.exec[0].onChange: is empty, so the command would never"
        ' run; list the paths that trigger it (e.g. ["./package.json"]), or remove onChange to'
        " run it after every upload",
    ),
    Bad(
        "onChange-invalid-pattern",
        with_on_upload("\n      exec:\n      - command: make\n        onChange: ['src/[']\n"),
        f"{P}:7:20: dev.sync[0].onUpload.exec[0].onChange[0]: invalid onChange pattern "
        "\"src/[\": a '[' is never closed, so git never matches it; add ']' or write '\\[' "
        "for a '['",
    ),
    Bad(
        "onChange-leaves-the-root",
        with_on_upload("\n      exec:\n      - command: make\n        onChange: [./../x]\n"),
        f"{P}:7:20: dev.sync[0].onUpload.exec[0].onChange[0]: invalid onChange pattern "
        "\"./../x\": a '..' path segment never matches: patterns cannot leave the sync root; "
        "remove it",
    ),
    Bad(
        "onChange-the-root-itself",
        with_on_upload("\n      exec:\n      - command: make\n        onChange: [./]\n"),
        f"{P}:7:20: dev.sync[0].onUpload.exec[0].onChange[0]: invalid onChange pattern "
        '"./": it names the sync root itself; remove onChange to run the command after every'
        " upload",
    ),
    Bad(
        "onChange-blank",
        with_on_upload("\n      exec:\n      - command: make\n        onChange: [' ']\n"),
        f"{P}:7:20: dev.sync[0].onUpload.exec[0].onChange[0]: invalid onChange pattern "
        '" ": it is blank; write a path such as ./package.json',
    ),
    Bad(
        "onChange-a-comment",
        with_on_upload("\n      exec:\n      - command: make\n        onChange: ['#x']\n"),
        f"{P}:7:20: dev.sync[0].onUpload.exec[0].onChange[0]: invalid onChange pattern "
        "\"#x\": gitignore reads a leading '#' as a comment; write '\\#x' for a name that "
        "starts with '#'",
    ),
    Bad(
        "unknown-key-in-item-typo",
        with_on_upload("\n      exec:\n      - comand: npm install\n"),
        f'{P}:6:9: dev.sync[0].onUpload.exec[0].comand: unknown option "comand"; '
        'did you mean "command"?',
    ),
    Bad(
        "unknown-key-in-item-far",
        with_on_upload("\n      exec:\n      - command: make\n        shell: bash\n"),
        f'{P}:7:9: dev.sync[0].onUpload.exec[0].shell: unknown option "shell"; '
        "valid options are: command, onChange",
    ),
    Bad(
        "devspace-args-not-supported",
        with_on_upload("\n      exec:\n      - command: npm\n        args: [install]\n"),
        f'{P}:7:9: dev.sync[0].onUpload.exec[0].args: unknown option "args"; podsync runs '
        "command through sh -c in the container: write the arguments into command",
    ),
    Bad(
        "devspace-local-not-supported",
        with_on_upload("\n      exec:\n      - command: make\n        local: true\n"),
        f'{P}:7:9: dev.sync[0].onUpload.exec[0].local: unknown option "local"; podsync runs '
        "onUpload commands in the container only",
    ),
    Bad(
        "unknown-key-under-onUpload",
        with_on_upload("\n      exce:\n      - command: make\n"),
        f'{P}:5:7: dev.sync[0].onUpload.exce: unknown option "exce"; did you mean "exec"?',
    ),
    Bad(
        "restartContainer-not-supported",
        with_on_upload("\n      restartContainer: true\n"),
        f'{P}:5:7: dev.sync[0].onUpload.restartContainer: unknown option "restartContainer"; '
        "podsync supports only exec under onUpload",
    ),
    Bad(
        "second-item-is-the-bad-one",
        with_on_upload(
            "\n      exec:\n      - command: make\n        onChange: [Makefile]\n"
            "      - command: npm install\n        onChange: [package.json, 7]\n"
        ),
        f"{P}:9:34: dev.sync[0].onUpload.exec[1].onChange[1]: expected a string, "
        "got the number 7; write it in quotes",
    ),
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_invalid_on_upload_is_one_exact_line_and_exit_2(
    case: Bad, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "devspace.yaml").write_text(case.text)
    code = run_cli(["list", "sync"])
    out, err = capsys.readouterr()
    assert (code, err, out) == (2, case.message + "\n", "")


def test_every_message_is_distinct() -> None:
    assert len({c.message for c in BAD}) == len(BAD)


def _load(text: str) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_text(text, Path(tmp) / "devspace.yaml", "devspace.yaml")
    (entry,) = cfg.sync
    if entry.on_upload is None:
        return ()
    return tuple((c.command or "", c.on_change_patterns()) for c in entry.on_upload.exec)


def test_the_devspace_example_loads_with_the_root_anchored() -> None:
    text = with_on_upload(
        '\n      exec:\n      - onChange: ["./package.json"]\n        command: |-\n'
        "          npm install\n      - command: make gen\n"
        "        onChange: [src/**/*.proto, '!src/vendor/', ./docs/]\n"
        "      - command: echo synced\n"
    )
    assert _load(text) == (
        ("npm install", ("/package.json",)),
        ("make gen", ("src/**/*.proto", "!src/vendor/", "/docs/")),
        ("echo synced", None),  # no onChange: after every batch that uploaded something
    )


@pytest.mark.parametrize("block", ["", " {}", " null", "\n      exec: []\n", "\n      exec:\n"])
def test_empty_on_upload_means_no_commands(block: str) -> None:
    text = with_on_upload(block if block.endswith("\n") else block + "\n")
    assert _load(text) == ()


def test_sync_specs_carry_the_commands(project: Path) -> None:
    from podsync.config import load_config

    text = '\n      exec:\n      - onChange: ["./package.json"]\n        command: npm install\n'
    (project / "devspace.yaml").write_text(with_on_upload(text + "      - command: date\n"))
    cfg = load_config(Path("devspace.yaml"))
    specs = _to_specs(cfg, project / ".devspace")
    (spec,) = specs
    assert [(c.command, c.on_change) for c in spec.on_upload] == [
        ("npm install", ("/package.json",)),
        ("date", None),
    ]


def _to_specs(cfg, state_dir):  # type: ignore[no-untyped-def]
    """The dev.sync -> SyncSpec conversion, wherever it lives (config.convert, or cli.specs
    after the layering move)."""
    try:
        from podsync.cli.specs import to_sync_specs
    except ImportError:
        from podsync.config.convert import to_sync_specs
    return to_sync_specs(cfg, state_dir)


@settings(max_examples=300, deadline=None)
@given(
    value=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(
                st.sampled_from(["exec", "command", "onChange", "args", "x"]), inner, max_size=3
            ),
        ),
        max_leaves=8,
    )
)
def test_any_on_upload_value_loads_or_fails_with_one_line(value: object) -> None:
    """Whatever onUpload holds: it loads, or one line naming a dev.sync[0].onUpload option."""
    entry = {"labelSelector": {"app": "web"}, "onUpload": value}
    text = json.dumps({"dev": {"sync": [entry]}})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            load_text(text, Path(tmp) / "devspace.yaml", "devspace.yaml")
        except ConfigError as err:
            assert "\n" not in str(err)
            assert re.match(r"^devspace\.yaml:1:\d+: dev\.sync\[0\]\.onUpload", str(err)), str(err)

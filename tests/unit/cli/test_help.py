"""``--help`` reads well at 60 and 80 columns: no line wider than the terminal, no flag name
cut ("--download-excl…") or broken across lines at a hyphen, no ``<bool>`` on switches, and
every command shows 2-4 examples that the command line really accepts."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from podsync.cli.app import app, run_cli

ROOT: Any = typer.main.get_command(app)


def command_paths(group: Any = ROOT, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(group, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


PATHS = command_paths()


def command_at(path: tuple[str, ...]) -> Any:
    cmd = ROOT
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def help_text(path: tuple[str, ...], width: int, capsys: pytest.CaptureFixture[str]) -> str:
    assert run_cli([*path, "--help"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_every_command_is_covered() -> None:
    assert {" ".join(p) for p in PATHS} >= {
        "",
        "sync",
        "dev",
        "add sync",
        "list sync",
        "status sync",
        "conflicts",
        "conflicts resolve",
    }


@pytest.mark.parametrize("width", [60, 80])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "podsync")
def test_help_fits_and_keeps_every_flag_whole(
    path: tuple[str, ...],
    width: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    out = help_text(path, width, capsys)
    lines = out.splitlines()
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, f"wider than {width} columns:\n" + "\n".join(too_wide)
    broken = [line for line in lines if re.search(r"[A-Za-z]-$", line)]
    assert not broken, "a word (a flag?) broken at a hyphen:\n" + "\n".join(broken)
    assert "<bool>" not in out and "…" not in out, out
    for param in command_at(path).params:
        if getattr(param, "hidden", False) or param.param_type_name != "option":
            continue
        for flag in (*param.opts, *param.secondary_opts):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out), (flag, out)


def examples_of(out: str) -> list[str]:
    after = out.split("Examples:", 1)[1] if "Examples:" in out else ""
    return [line.strip() for line in after.splitlines() if line.strip().startswith("podsync")]


def parse(argv: list[str]) -> None:
    """Parse ``argv`` as podsync would, down to the last subcommand, without running it: an
    unknown flag or a bad value raises click's UsageError."""
    cmd, name, args, parent = ROOT, "podsync", argv, None
    while True:
        ctx = cmd.make_context(name, list(args), parent=parent)
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not hasattr(cmd, "resolve_command") or not rest:
            return
        name, cmd, args = cmd.resolve_command(ctx, rest)
        parent = ctx


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "podsync")
def test_each_command_shows_two_to_four_examples_that_parse(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    found = examples_of(help_text(path, 80, capsys))
    assert 2 <= len(found) <= 4, found
    for example in found:
        argv = shlex.split(example)[1:]
        assert argv[: len(path)] == list(path) or not path, example
        parse(argv)


def test_a_bad_example_would_be_caught() -> None:
    from typer._click.exceptions import UsageError

    with pytest.raises(UsageError):
        parse(["sync", "--docker", "web", "--no-such-flag"])
    with pytest.raises(UsageError):
        parse(["conflicts", "resolve", "x", "--keep", "neither"])

"""README's promises: its two set-up commands are the ones last rehearsed successfully in a
fresh virtualenv (``python -m tests.support.rehearse_readme`` ran them as written and in order,
and recorded what it ran), and its Commands section documents every command."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import typer
from tests.support.rehearse_readme import README, RECORD, REPO, setup_commands

from podsync.cli.app import app

TEST_COMMAND = "python -m pytest -q"  # .ci/run greps README for exactly this


def test_readme_setup_commands_are_the_rehearsed_ones() -> None:
    """The record is written after each step of the rehearsal, so while the rehearsal's own
    test command runs (this suite) it holds the install's result and whether pytest starts."""
    commands = setup_commands(README.read_text(encoding="utf-8"))
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    assert commands == record["commands"], (
        "README's set-up commands changed since the last rehearsal: run "
        "`python -m tests.support.rehearse_readme` and commit its record"
    )
    results = record["results"]
    assert record["fresh_venv"] and results[0]["exit"] == 0, record
    assert record["pytest_starts"], record  # the "No module named pytest" of issue 10
    if len(results) == 2:  # the test command ran the whole suite (whether all of it passed
        # is CI's verdict, not README's: the command itself worked)
        assert results[1]["exit"] in (0, 1), record
        assert re.search(r"\d+ passed", results[1]["tail"][-1]), record


def test_the_install_command_brings_what_the_test_command_needs() -> None:
    install, test = setup_commands(README.read_text(encoding="utf-8"))
    assert test == TEST_COMMAND
    extras = re.findall(r"pip install -e '?\.\[([\w,]+)\]'?", install)
    assert extras, f"the first command does not install the project with its test extra: {install}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = [
        dep
        for extra in extras[0].split(",")
        for dep in pyproject["project"]["optional-dependencies"][extra]
    ]
    assert any(dep.startswith("pytest") for dep in wanted), wanted
    # the quickstart part runs on the embedded default target: no cluster, no Docker
    assert "--local-target" in install and "--no-watch" in install


def command_paths(group: Any, prefix: str = "podsync") -> list[str]:
    paths = []
    for name, sub in getattr(group, "commands", {}).items():
        paths.append(f"{prefix} {name}")
        paths += command_paths(sub, f"{prefix} {name}")
    return paths


def test_readme_commands_section_documents_every_command() -> None:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Commands\n(.*?)(?=^## )", text, re.S | re.M)
    assert section is not None
    leaves = [p for p in command_paths(typer.main.get_command(app)) if p.count(" ") >= 1]
    missing = [p for p in leaves if p not in section.group(1)]
    assert not missing, f"README's Commands section does not show: {missing}"
    assert (REPO / "README.md") == README

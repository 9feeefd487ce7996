"""Rehearse README's "Set up" commands as a new user would, and record what ran.

Owns: extracting the set-up commands from README.md, running them in a fresh
``python -m venv`` (as written, in order, from the repository root, with nothing of the
caller's Python environment: no PYTHONPATH, no other virtualenv), and the record
``tests/support/readme_rehearsal.json``. tests/unit/test_readme.py checks that README's
commands are still the ones the last rehearsal ran successfully. May import: the standard
library.

Usage (a few minutes for the install; the test command then runs the whole suite)::

    python -m tests.support.rehearse_readme            # rehearse and update the record
    python -m tests.support.rehearse_readme --dry-run  # print the commands only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RECORD = Path(__file__).with_name("readme_rehearsal.json")
#: The environment variables of the caller's Python that a new user would not have.
FOREIGN = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")


def setup_commands(readme: str) -> list[str]:
    """The commands of the ``bash`` blocks in README's "Set up" section, in order."""
    match = re.search(r"^## Set up\n(.*?)(?=^## )", readme, re.S | re.M)
    if match is None:
        raise SystemExit("README.md has no '## Set up' section")
    blocks = re.findall(r"```bash\n(.*?)```", match.group(1), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _run(command: str, env: dict[str, str]) -> dict[str, object]:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    tail = lines[-3:]
    print(f"$ {command}\n  exit {done.returncode}: {' | '.join(tail)}", flush=True)
    return {
        "command": command,
        "exit": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "failed": [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))][:30],
        "tail": tail,
    }


def rehearse(commands: list[str]) -> dict[str, object]:
    """Run ``commands`` in order in a fresh venv; the record is written after each step, so
    the test suite that the last command runs already sees this rehearsal's install."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results: list[dict[str, object]] = []
    record: dict[str, object] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": sys.version.split()[0],
        "fresh_venv": True,
        "commands": commands,
        "results": results,
    }
    with tempfile.TemporaryDirectory(prefix="podsync-readme-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
        for index, command in enumerate(commands):
            if index == len(commands) - 1:  # before the test run: can it start at all?
                probe = _run("python -m pytest --version", env)
                record["pytest_starts"] = probe["exit"] == 0
                _save(record)
            results.append(_run(command, env))
            _save(record)
            if results[-1]["exit"] != 0:
                break
    return record


def _save(record: dict[str, object]) -> None:
    RECORD.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args()
    commands = setup_commands(README.read_text(encoding="utf-8"))
    if args.dry_run:
        print("\n".join(commands))
        return 0
    record = rehearse(commands)
    results = record["results"]
    assert isinstance(results, list)
    ok = len(results) == len(commands) and all(r["exit"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The design's layering rules, checked on the source (DESIGN.md section 3):

- what ships into the container (errors, limits, core, wire, replica, agent) imports only the
  standard library and other shipped modules;
- core and wire do no I/O (no os, io, socket, subprocess, threading, time, logging...);
- transport knows nothing of sync (no engine, core planners, replica or agent imports).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "podsync"
SHIPPED = ("errors.py", "limits.py", "core", "wire", "replica", "agent")
IO_MODULES = {"os", "io", "socket", "subprocess", "threading", "asyncio", "time", "logging",
              "select", "shutil", "tempfile", "pathlib", "signal"}  # fmt: skip


def modules(*names: str) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = SRC / name
        out.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return out


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def shipped_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "podsync" and (
        len(parts) == 1 or parts[1] in {s.removesuffix(".py") for s in SHIPPED}
    )


@pytest.mark.parametrize("path", modules(*SHIPPED), ids=lambda p: str(p.relative_to(SRC)))
def test_shipped_code_imports_only_the_standard_library(path: Path) -> None:
    for name in imports(path):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top == "__future__" or shipped_module(name), (
            f"{path.relative_to(SRC)} imports {name}, which does not ship into the container"
        )


@pytest.mark.parametrize("path", modules("core", "wire"), ids=lambda p: str(p.relative_to(SRC)))
def test_core_and_wire_do_no_io(path: Path) -> None:
    io = {n for n in imports(path) if n.split(".")[0] in IO_MODULES}
    assert not io, f"{path.relative_to(SRC)} imports {sorted(io)}: core and wire stay pure"


@pytest.mark.parametrize("path", modules("transport"), ids=lambda p: str(p.relative_to(SRC)))
def test_transport_knows_nothing_of_sync(path: Path) -> None:
    sync = {
        n
        for n in imports(path)
        if n.startswith(("podsync.engine", "podsync.replica", "podsync.agent", "podsync.wire"))
        or n in ("podsync.core.plan", "podsync.core.initial", "podsync.core.reconcile")
    }
    assert not sync, f"{path.relative_to(SRC)} imports {sorted(sync)}"


@pytest.mark.parametrize("path", modules("config"), ids=lambda p: str(p.relative_to(SRC)))
def test_config_is_data_and_imports_nothing_from_the_engine(path: Path) -> None:
    """devspace.yaml in, validated config out: turning it into the engine's SyncSpecs is the
    CLI's job (cli/specs.py), so config never learns what the engine looks like."""
    above = {
        n
        for n in imports(path)
        if n.startswith(("podsync.engine", "podsync.cli", "podsync.transport", "podsync.bootstrap"))
    }
    assert not above, f"{path.relative_to(SRC)} imports {sorted(above)}"

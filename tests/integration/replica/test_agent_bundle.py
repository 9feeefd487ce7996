"""The agent bundle unpacks itself once next to the .pyz (so bytecode is cached between
starts) and still runs from the zip when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from podsync.bootstrap.zipapp import agent_bundle
from podsync.wire.frames import handshake_bytes


def start(bundle: Path, root: Path) -> bytes:
    """Run the agent with stdin at EOF: it sends its handshake and exits."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, str(bundle), "serve", str(root)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_first_start_unpacks_and_later_starts_use_the_cached_bytecode(tmp_path: Path) -> None:
    bundle = tmp_path / "agent-x.pyz"
    bundle.write_bytes(agent_bundle()[0])
    assert start(bundle, tmp_path / "root") == handshake_bytes()
    unpacked = tmp_path / "agent-x.d"
    assert (unpacked / "podsync" / "agent" / "server.py").is_file()
    assert list((unpacked / "podsync" / "agent" / "__pycache__").glob("server.*.pyc"))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert start(bundle, tmp_path / "root") == handshake_bytes()


def test_an_unwritable_folder_falls_back_to_the_zip(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    bundle = folder / "agent-y.pyz"
    bundle.write_bytes(agent_bundle()[0])
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores the mode: simulate with a blocker file
            folder.chmod(0o755)
            (folder / "agent-y.d.blocker").write_text("")
            (folder / "agent-y.d").write_text("not a directory")
        assert start(bundle, tmp_path / "root") == handshake_bytes()
        assert not (folder / "agent-y.d").is_dir()
    finally:
        folder.chmod(0o755)

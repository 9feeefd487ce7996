"""Names and unreadable paths through the whole engine (real engine in-process, real python
agent as a local subprocess, local target).

- Non-UTF-8 names and link targets are synced byte-exact both ways (needs the wire to carry
  surrogate-escaped strings: "proto"'s change in wire/ and agent/).
- A local folder that becomes unreadable is *unknown*, not emptied: nothing in the
  container is deleted, in the watch phase, after a reconnect or after a restart. EACCES
  as root without FUSE: the engine runs in a forked child that dropped root's override
  capabilities (``tests.support.privileges``), and the agent it starts inherits that.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tests.integration.engine.engine_helpers import EngineThread, agent_pids, local_spec
from tests.support.privileges import without_root_override
from tests.support.wait import wait_until


def _raw(root: Path, rel: bytes) -> bytes:
    return os.path.join(os.fsencode(root), rel)


def _names(root: Path) -> set[bytes]:
    base = os.fsencode(root)
    out: set[bytes] = set()
    for dirpath, dirnames, filenames in os.walk(base):
        if dirpath == base and b".devspace" in dirnames:
            dirnames.remove(b".devspace")
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), base))
    return out


def _write(root: Path, rel: bytes, data: bytes) -> None:
    full = _raw(root, rel)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)


def _read(root: Path, rel: bytes) -> bytes | None:
    try:
        with open(_raw(root, rel), "rb") as f:
            return f.read()
    except OSError:
        return None


def test_non_utf8_names_sync_byte_exact_both_ways(tmp_path: Path) -> None:
    local, far = tmp_path / "local", tmp_path / "far"
    local.mkdir()
    far.mkdir()
    _write(local, b"bad\xff.txt", b"one")
    _write(local, b"d\xfe/caf\xe9", b"latin-1 name")
    _write(local, "ok-é".encode(), b"utf-8 name")
    _write(local, b"new\nline", b"newline")
    os.symlink(b"bad\xff.txt", _raw(local, b"link\xfd"))
    engine = EngineThread(local_spec(local, far))
    try:
        try:
            wait_until(engine.watching, 30, message="never watching")
            wait_until(lambda: _names(far) == _names(local), 15, message="trees differ")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; far has {sorted(_names(far))}\n{engine.output.getvalue()}"
            ) from None
        assert _read(far, b"d\xfe/caf\xe9") == b"latin-1 name"
        assert os.readlink(_raw(far, b"link\xfd")) == b"bad\xff.txt"

        _write(far, b"from\xfc/far\x80", b"back")
        wait_until(lambda: _read(local, b"from\xfc/far\x80") == b"back", 15)
        os.unlink(_raw(far, b"bad\xff.txt"))
        wait_until(lambda: _read(local, b"bad\xff.txt") is None, 15)
        assert engine.failure() is None
        shown = engine.output.getvalue()
        assert "Traceback" not in shown
    finally:
        engine.stop()


def _unreadable_scenario(local: Path, far: Path) -> dict[str, object]:
    """Runs without root's override: returns what the parent asserts on."""
    engine = EngineThread(local_spec(local, far))
    log = local / ".devspace" / "logs" / "sync.log"
    try:
        wait_until(engine.watching, 30, message="never watching")
        wait_until(lambda: (far / "d" / "a").exists() and (far / "d" / "b").exists(), 15)

        (local / "d").chmod(0o000)
        wait_until(
            lambda: log.exists() and "d: could not be read (Permission denied)" in log.read_text(),
            15,
            message="no warning about the unreadable folder",
        )
        (local / "z").write_text("a later change")
        wait_until(
            lambda: (far / "z").exists() and not engine.session._held,
            15,
            message="later change never synced, or deletions still held",
        )
        after_watch = sorted(os.listdir(far / "d"))

        old = set(agent_pids(far))
        for pid in old:
            os.kill(pid, 9)
        wait_until(lambda: bool(set(agent_pids(far)) - old) and engine.watching(), 40)
        (local / "z2").write_text("after the reconnect")
        wait_until(lambda: (far / "z2").exists() and not engine.session._held, 15)
        after_reconnect = sorted(os.listdir(far / "d"))

        first_output = engine.output.getvalue()
        engine.stop()  # a new run resumes from the saved state, d still unreadable
        engine = EngineThread(local_spec(local, far))
        wait_until(engine.watching, 30, message="never watching after the restart")
        (local / "z3").write_text("after the restart")
        wait_until(lambda: (far / "z3").exists() and not engine.session._held, 15)
        after_restart = sorted(os.listdir(far / "d"))

        (local / "d").chmod(0o755)
        (local / "d" / "c").write_text("readable again")
        wait_until(lambda: (far / "d" / "c").exists(), 15, message="d never synced again")
        return {
            "after_watch": after_watch,
            "after_reconnect": after_reconnect,
            "after_restart": after_restart,
            "end": sorted(os.listdir(far / "d")),
            "failure": engine.failure(),
            "output": first_output + engine.output.getvalue(),
        }
    finally:
        if (local / "d").exists():
            (local / "d").chmod(0o755)
        engine.stop()


def test_an_unreadable_local_folder_is_unknown_not_deleted(tmp_path: Path) -> None:
    local, far = tmp_path / "local", tmp_path / "far"
    (local / "d").mkdir(parents=True)
    far.mkdir()
    (local / "keep").write_text("keeps the container side from looking emptied")
    (local / "d" / "a").write_text("a")
    (local / "d" / "b").write_text("b")

    seen = without_root_override(lambda: _unreadable_scenario(local, far))

    output = str(seen["output"])
    assert seen["failure"] is None, output
    assert seen["after_watch"] == ["a", "b"], output
    assert seen["after_reconnect"] == ["a", "b"], output
    assert seen["after_restart"] == ["a", "b"], output
    assert seen["end"] == ["a", "b", "c"], output
    assert "Traceback" not in output


def _make_deep(root: Path, parts: list[str], data: bytes) -> None:
    """Create ``root/parts.../leaf`` whatever its length (directory fds, never a long path)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, data)
        os.close(out)
    finally:
        os.close(fd)


def _deep_read(root: Path, parts: list[str]) -> bytes | None:
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open(parts[-1], os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(leaf, 1 << 16)
        finally:
            os.close(leaf)
    except OSError:
        return None
    finally:
        os.close(fd)


def test_odd_local_entries_never_crash_the_engine(tmp_path: Path) -> None:
    """A name with a newline, a 255-byte name, a path longer than PATH_MAX, a fifo, a socket
    and a device file, then a file replaced by a directory: the regular entries sync, each
    special file is one warning, once; nothing raises."""
    import socket

    local, far = tmp_path / "local", tmp_path / "far"
    local.mkdir()
    far.mkdir()
    (local / "new\nline").write_text("nl")
    (local / ("n" * 255)).write_text("long name")
    deep = ["d" * 200] * 25 + ["leaf"]  # > 5,000 bytes
    _make_deep(local, deep, b"deep")
    os.mkfifo(local / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(local / "sock"))
    os.mknod(local / "null", 0o600 | 0o020000, os.makedev(1, 3))
    (local / "x").write_text("a file first")
    engine = EngineThread(local_spec(local, far))
    try:
        wait_until(engine.watching, 30, message="never watching")
        wait_until(lambda: _deep_read(far, deep) == b"deep", 15, message="deep file never synced")
        assert (far / "new\nline").read_text() == "nl"
        assert (far / ("n" * 255)).read_text() == "long name"
        assert not any((far / n).exists() for n in ("fifo", "sock", "null"))

        (local / "x").unlink()
        (local / "x").mkdir()
        (local / "x" / "inner").write_text("now a folder")
        wait_until(lambda: (far / "x" / "inner").is_file(), 15, message="x never became a dir")
        _make_deep(local, [*deep[:-1], "later"], b"later")  # watched beyond PATH_MAX too
        wait_until(lambda: _deep_read(far, [*deep[:-1], "later"]) == b"later", 15)
        assert engine.failure() is None
        shown = engine.output.getvalue()
        assert "Traceback" not in shown
        for name, kind in (
            ("fifo", "a named pipe (fifo)"),
            ("sock", "a socket"),
            ("null", "a device file"),
        ):
            assert shown.count(f"warning: {name}: skipped: {kind} is never synced") == 1, shown
    finally:
        sock.close()
        engine.stop()


def _far_unreadable_scenario(local: Path, far: Path) -> dict[str, object]:
    engine = EngineThread(local_spec(local, far))
    try:
        wait_until(engine.watching, 30, message="never watching")
        (far / "d").mkdir()
        (far / "d" / "a").write_text("a")
        (far / "d" / "b").write_text("b")
        wait_until(lambda: (local / "d" / "a").exists() and (local / "d" / "b").exists(), 15)
        (far / "d").chmod(0o000)
        (far / "z").write_text("a later change")
        wait_until(
            lambda: (local / "z").exists() and not engine.session._held,
            15,
            message="later change never synced, or deletions still held",
        )
        return {
            "after": sorted(os.listdir(local / "d")),
            "failure": engine.failure(),
            "output": engine.output.getvalue(),
        }
    finally:
        if (far / "d").exists():
            (far / "d").chmod(0o755)
        engine.stop()


def test_an_unreadable_container_folder_is_unknown_not_deleted(tmp_path: Path) -> None:
    """The same guarantee on the agent's side: a folder in the container that becomes
    unreadable keeps its local copies."""
    local, far = tmp_path / "local", tmp_path / "far"
    local.mkdir()
    far.mkdir()
    (local / "keep").write_text("keeps the container side from looking emptied")

    seen = without_root_override(lambda: _far_unreadable_scenario(local, far))

    output = str(seen["output"])
    assert seen["failure"] is None, output
    assert seen["after"] == ["a", "b"], output
    assert "Traceback" not in output

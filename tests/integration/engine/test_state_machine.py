"""A hypothesis state machine driving a REAL sync engine over two real folders.

The engine (``Session``: initial sync, watch, reconnect) runs in-process in a background event
loop; the far side is served by the real agent as a local subprocess. Rules make random user
changes on BOTH sides (create / modify / delete / rename / chmod +x / relative symlink /
mkdir / rmdir, the same path edited on both sides at once) and drop the connection (SIGKILL
of the agent: the engine must reconnect and resume from its last agreed state). The
``settle`` rule and the teardown wait (deadline, no fixed sleeps) until:

- both folders are identical (paths, kinds, contents, exec bits; no temp file left);
- excluded paths were never transferred: ``ex/`` (excludePaths) holds on each side exactly what
  that side's user wrote there; ``upx/`` (uploadExcludePaths, written locally) never appears in
  the container;
- NO DATA LOSS: every content a user ever wrote, and that no user action destroyed, is still
  somewhere: a file on either side, or in ``.devspace/trash/`` or ``.devspace/conflicts/``.

User edits are made so the test knows exactly what the user destroyed, even while the engine
writes the same path concurrently: the old file is first moved out of the tree atomically
(rename into a holding folder) and what it held is counted as destroyed by the user; the new
content is hard-linked into place, which fails instead of clobbering a file the engine just
created (the edit is then retried).

Knobs for bug hunts (defaults keep the run under a minute): PODSYNC_SM_EXAMPLES (20),
PODSYNC_SM_STEPS (15), PODSYNC_SM_SETTLE (30 s convergence deadline), PODSYNC_SM_HUNT=1 (no
shrinking). Measured here: 300 examples x 15 steps in ~130 s.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from tests.integration.engine.engine_helpers import (
    EngineThread,
    agent_pids,
    file_contents,
    kill_agents,
    local_spec,
    tree,
)
from tests.support.wait import wait_until

SIDES = ("local", "remote")
PATHS = ("a", "b", "c", "a/x", "a/y", "b/x", "b/a", "b/a/x")
#: Link targets: plain names, so every link stays inside the root wherever it is made.
LINKS = ("x", "y", "keep")
SPECIAL = frozenset({".devspace", "ex", "upx"})
SENTINEL = b"sentinel: the container side never looks emptied"
SETTLE_SECONDS = float(os.environ.get("PODSYNC_SM_SETTLE", "30"))

_ids = itertools.count()


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="podsync-sm-"))
        self.roots = {"local": self.base / "local", "remote": self.base / "far"}
        self.hold = self.base / "hold"
        for folder in (*self.roots.values(), self.hold):
            folder.mkdir()
        (self.roots["local"] / "keep").write_bytes(SENTINEL)
        self.written: set[bytes] = {SENTINEL}
        self.destroyed: set[bytes] = set()
        self.ex: dict[str, dict[str, bytes]] = {"local": {}, "remote": {}}
        self.upx: dict[str, bytes] = {}
        self.drops = 0
        spec = local_spec(
            self.roots["local"], self.roots["remote"], exclude=("ex/",), upload_exclude=("upx/",)
        )
        self.engine = EngineThread(spec)
        try:
            wait_until(self._up, 30, message="the engine never started watching")
        except BaseException:
            self.engine.stop()
            raise

    # -- user actions that know what they destroy ------------------------------------------
    def _fresh(self, side: str) -> bytes:
        return f"{side}-{next(_ids)}\n".encode()

    def _capture(self, full: Path) -> bool:
        """Move ``full`` out of the tree atomically; what it held is destroyed by the user."""
        held = self.hold / f"old-{next(_ids)}"
        try:
            os.rename(full, held)
        except (FileNotFoundError, NotADirectoryError):
            return False
        self._destroy(held)
        return True

    def _destroy(self, held: Path) -> None:
        if held.is_dir() and not held.is_symlink():
            self.destroyed |= file_contents(held)
            shutil.rmtree(held)
        else:
            if held.is_file() and not held.is_symlink():
                self.destroyed.add(held.read_bytes())
            held.unlink()

    def _put(self, full: Path, data: bytes, executable: bool = False) -> bool:
        """Create or replace the file ``full`` (never a directory) with ``data``."""
        if not full.parent.is_dir() or full.parent.is_symlink():
            return False
        new = self.hold / f"new-{next(_ids)}"
        new.write_bytes(data)
        if executable:
            new.chmod(0o755)
        try:
            for _ in range(5):
                if full.is_dir() and not full.is_symlink():
                    return False
                self._capture(full)
                try:
                    os.link(new, full)
                    self.written.add(data)
                    return True
                except FileExistsError:
                    continue  # the engine created it in between: capture that too
                except (FileNotFoundError, NotADirectoryError):
                    return False
            return False
        finally:
            new.unlink()

    def _path(self, side: str, rel: str) -> Path:
        return self.roots[side] / rel

    # -- rules ---------------------------------------------------------------------------
    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(PATHS), executable=st.booleans())
    def write(self, side: str, rel: str, executable: bool) -> None:
        self._put(self._path(side, rel), self._fresh(side), executable)

    @rule(rel=st.sampled_from(PATHS))
    def write_both(self, rel: str) -> None:
        """The same path edited on both sides before the engine can propagate either."""
        for side in SIDES:
            self._put(self._path(side, rel), self._fresh(side))

    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(PATHS))
    def delete(self, side: str, rel: str) -> None:
        self._capture(self._path(side, rel))

    @rule(side=st.sampled_from(SIDES), src=st.sampled_from(PATHS), dst=st.sampled_from(PATHS))
    def rename(self, side: str, src: str, dst: str) -> None:
        source, target = self._path(side, src), self._path(side, dst)
        if src == dst or dst.startswith(src + "/") or not source.exists() or target.exists():
            return
        if not target.parent.is_dir():
            return
        held = self.hold / f"mv-{next(_ids)}"
        try:
            os.rename(source, held)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if held.is_dir():
                os.rename(held, target)  # replaces at most an empty directory: nothing lost
            else:
                # never clobbers what the engine created meanwhile
                os.link(held, target, follow_symlinks=False)
                held.unlink()
        except OSError:
            self._destroy(held)

    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(PATHS))
    def chmod_x(self, side: str, rel: str) -> None:
        full = self._path(side, rel)
        try:
            mode = os.lstat(full).st_mode
            if stat.S_ISREG(mode):
                os.chmod(full, mode ^ 0o111)
        except OSError:
            pass

    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(PATHS), to=st.sampled_from(LINKS))
    def symlink(self, side: str, rel: str, to: str) -> None:
        """A relative link inside the root (kept as a link on the other side)."""
        with contextlib.suppress(OSError):
            os.symlink(to, self._path(side, rel))

    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(PATHS))
    def mkdir(self, side: str, rel: str) -> None:
        with contextlib.suppress(OSError):
            os.mkdir(self._path(side, rel))

    @rule(side=st.sampled_from(SIDES), rel=st.sampled_from(PATHS))
    def rmdir(self, side: str, rel: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self._path(side, rel))

    @rule(side=st.sampled_from(SIDES), name=st.sampled_from(("1", "2")))
    def write_excluded(self, side: str, name: str) -> None:
        folder = self._path(side, "ex")
        folder.mkdir(exist_ok=True)
        data = self._fresh(side)
        if self._put(folder / name, data):
            self.ex[side][name] = data

    @rule(name=st.sampled_from(("1", "2")))
    def write_upload_excluded(self, name: str) -> None:
        folder = self._path("local", "upx")
        folder.mkdir(exist_ok=True)
        data = self._fresh("local")
        if self._put(folder / name, data):
            self.upx[name] = data

    @precondition(lambda self: self.drops < 3)
    @rule()
    def drop_connection(self) -> None:
        """SIGKILL the agent; the engine must reconnect and resume from the agreed state."""
        self.drops += 1  # counted whether or not an agent was up (hypothesis needs
        killed = kill_agents(self.roots["remote"])  # preconditions that depend on steps only)
        event(f"agents killed: {killed}")

    @rule()
    def settle(self) -> None:
        self._settle_and_check()

    def teardown(self) -> None:
        try:
            self._settle_and_check()
        finally:
            self.engine.stop()
            left = agent_pids(self.roots["remote"])
            shutil.rmtree(self.base, ignore_errors=True)
            assert not left, f"agent processes left after stop: {left}"

    # -- checks --------------------------------------------------------------------------
    def _up(self) -> bool:
        failure = self.engine.failure()
        assert failure is None, failure
        assert self.engine.state != "halted", self.engine.message
        return self.engine.watching()

    def _trees(self) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
        return tree(self.roots["local"], SPECIAL), tree(self.roots["remote"], SPECIAL)

    def _settle_and_check(self) -> None:
        def converged() -> bool:
            if not self._up():
                return False
            ours, theirs = self._trees()
            return ours == theirs

        try:
            wait_until(converged, SETTLE_SECONDS, interval=0.02)
        except AssertionError:
            ours, theirs = self._trees()
            diff = {
                k: (ours.get(k), theirs.get(k))
                for k in sorted(set(ours) | set(theirs))
                if ours.get(k) != theirs.get(k)
            }
            raise AssertionError(
                f"no convergence within {SETTLE_SECONDS} s (state {self.engine.state}): "
                f"local vs container differ at {diff}\n{self.engine.output.getvalue()}"
            ) from None
        self._check_excludes()
        self._check_no_loss()

    def _check_excludes(self) -> None:
        for side in SIDES:
            found = tree(self.roots[side] / "ex")
            files = {k: v[1] for k, v in found.items() if v[0] == "f"}
            assert files == self.ex[side], f"ex/ on the {side} side holds {found}"
        assert not (self.roots["remote"] / "upx").exists(), "upload-excluded upx/ was uploaded"
        assert not (self.roots["remote"] / ".devspace").exists(), ".devspace was synced"
        upx = tree(self.roots["local"] / "upx")
        assert {k: v[1] for k, v in upx.items() if v[0] == "f"} == self.upx

    def _check_no_loss(self) -> None:
        found = file_contents(self.roots["local"]) | file_contents(self.roots["remote"])
        lost = self.written - self.destroyed - found
        assert not lost, (
            f"contents lost by the engine (not on either side, not in trash/conflicts): "
            f"{sorted(lost)}\nlocal: {tree(self.roots['local'])}\n"
            f"container: {tree(self.roots['remote'])}\n{self.engine.output.getvalue()}"
        )


EngineMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("PODSYNC_SM_EXAMPLES", "20")),
    stateful_step_count=int(os.environ.get("PODSYNC_SM_STEPS", "15")),
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    # PODSYNC_SM_HUNT=1: long bug hunts without shrinking (timing-dependent failures shrink
    # badly and slowly); the failing run's steps are still printed.
    phases=(Phase.generate,) if os.environ.get("PODSYNC_SM_HUNT") else tuple(Phase),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineStateMachine = EngineMachine.TestCase

"""onUpload commands end to end, on every target and agent (Docker with the python agent,
Docker with the shell agent, a local folder): the real engine (a Session, as ``podsync dev``
runs one per dev.sync entry) with a SyncSpec carrying the commands, real containers, real
files. ``podsync dev`` itself reaches only Kubernetes, so the CLI path is tested on the real
cluster kit in tests/k8s/test_onupload.py; here the engine is driven directly.

Each test waits on what a user would see (files, console lines) with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import Target
from tests.e2e.test_faults import container_watcher_pids
from tests.integration.engine.engine_helpers import EngineThread, agent_pids
from tests.support.wait import wait_until

from podsync.engine.spec import SyncSpec, TargetSpec, UploadCommand

PREFIX = "[sync-0 exec] "
#: What `npm install` does, in sh: records what it saw, writes a generated file (synced
#: back), a dependency (download-only folder: synced back) and a cache (excluded: stays).
INSTALL = (
    'echo "files=$(ls src | wc -l) pkg=$(cat package.json)" >> installs.log;'
    " mkdir -p generated node_modules/dep cache; cp package.json generated/seen.json;"
    " echo 'module.exports = 1' > node_modules/dep/index.js; echo big > cache/blob;"
    " echo installed"
)


def spec_for(target: Target, workdir: Path, *commands: UploadCommand) -> SyncSpec:
    if target.kind == "local":
        where = TargetSpec("local", local_dir=Path(target.far.root))
        container_path = None
    else:
        where = TargetSpec("docker", container=target.container)
        container_path = target.far.root
    return SyncSpec(
        name="sync-0",
        local_root=workdir,
        target=where,
        state_dir=workdir / ".devspace",
        container_path=container_path,
        exclude=("cache/",),
        upload_exclude=("node_modules/",),
        on_upload=commands,
    )


class Engine:
    """An EngineThread whose failures show its console; stopped at teardown."""

    def __init__(self, spec: SyncSpec) -> None:
        self.thread = EngineThread(spec)

    @property
    def console(self) -> list[str]:
        return self.thread.output.getvalue().splitlines()

    def until(self, predicate: object, what: str, timeout: float = 60) -> None:
        def check() -> bool:
            failure = self.thread.failure()
            assert failure is None, failure
            return bool(predicate())  # type: ignore[operator]

        wait_until(check, timeout, message=f"{what}; console:\n{self.thread.output.getvalue()}")

    def said(self, needle: str) -> int:
        return sum(needle in line for line in self.console)

    def runs(self) -> list[str]:
        """The "running" lines, without the prefix."""
        return [ln.removeprefix(PREFIX) for ln in self.console if ln.startswith(PREFIX + "running")]


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        if engine.thread.thread.is_alive():
            engine.thread.stop()
        print(engine.thread.output.getvalue())


def start(engines: list[Engine], spec: SyncSpec) -> Engine:
    engine = Engine(spec)
    engines.append(engine)
    engine.until(engine.thread.watching, "never reached the watch phase")
    return engine


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def test_commands_run_after_the_initial_sync_and_after_matching_uploads(
    target: Target, workdir: Path, engines: list[Engine]
) -> None:
    (workdir / "src").mkdir()
    for i in range(30):
        (workdir / "src" / f"f{i:02}.js").write_text(f"// {i}\n")
    (workdir / "package.json").write_text('{"v":1}')
    install = UploadCommand(INSTALL, ("/package.json",))
    engine = start(engines, spec_for(target, workdir, install))

    # Once after the initial sync, which had uploaded all 31 files when it ran.
    engine.until(lambda: read(workdir / "generated" / "seen.json") == '{"v":1}', "not run")
    assert target.far.read("installs.log") == b'files=30 pkg={"v":1}\n'
    console = engine.console
    initial = next(i for i, ln in enumerate(console) if "initial sync: uploaded" in ln)
    first_run = next(i for i, ln in enumerate(console) if ln.startswith(PREFIX + "running"))
    assert initial < first_run
    assert PREFIX + "installed" in console
    # What the command made comes back by the usual rules: downloaded, unless excluded.
    engine.until(
        lambda: read(workdir / "node_modules" / "dep" / "index.js") == "module.exports = 1\n",
        "the command's node_modules/ never came back",
    )
    assert not (workdir / "cache").exists()

    # Watch phase: a file that does not match uploads without a run; package.json runs it.
    (workdir / "src" / "f00.js").write_text("// edited\n")
    engine.until(lambda: target.far.read("src/f00.js") == b"// edited\n", "edit not uploaded")
    # The same size: the command's rewrite of generated/seen.json may land within the second
    # of the first run's, which only the nanoseconds of its mtime tell apart.
    (workdir / "package.json").write_text('{"v":2}')
    engine.until(lambda: read(workdir / "generated" / "seen.json") == '{"v":2}', "no second run")
    engine.until(lambda: engine.said("` done in") == 2, "second run never finished")
    assert target.far.read("installs.log") == b'files=30 pkg={"v":1}\nfiles=30 pkg={"v":2}\n'
    assert [r.rsplit(" (", 1)[1] for r in engine.runs()] == ["package.json uploaded)"] * 2
    log = (workdir / ".devspace" / "logs" / "sync.log").read_text()
    assert log.count("INFO  [sync-0 exec] installed\n") == 2
    assert engine.thread.session.on_upload.schedule.idle


def test_a_resume_that_uploads_package_json_runs_the_command_once_after_it(
    target: Target, workdir: Path, engines: list[Engine]
) -> None:
    (workdir / "package.json").write_text('{"v":1}')
    (workdir / "src").mkdir()
    spec = spec_for(target, workdir, UploadCommand(INSTALL, ("/package.json",)))
    engine = start(engines, spec)
    engine.until(lambda: read(workdir / "installs.log") is not None, "not run, or not synced back")
    engine.thread.stop()

    (workdir / "package.json").write_text('{"v":2}')  # edited while podsync was not running
    again = start(engines, spec)
    again.until(lambda: again.said("` done in"), "not run after the resume")
    assert target.far.read("installs.log") == b'files=0 pkg={"v":1}\nfiles=0 pkg={"v":2}\n'
    console = again.console
    # A resume from the saved state (an initial sync, were the container's filesystem not
    # recognised): either way the command runs once, after the pass.
    first_pass = next(
        i for i, ln in enumerate(console) if "resume: uploaded" in ln or "sync: uploaded" in ln
    )
    assert first_pass < next(i for i, ln in enumerate(console) if ln.startswith(PREFIX + "run"))
    assert again.said(PREFIX + "running") == 1


def test_a_failing_command_is_one_line_and_the_sync_goes_on(
    target: Target, workdir: Path, engines: list[Engine]
) -> None:
    (workdir / "Makefile").write_text("all:\n")
    engine = start(
        engines, spec_for(target, workdir, UploadCommand("echo broken >&2; exit 4", ("Makefile",)))
    )
    engine.until(lambda: engine.said("failed with exit code 4"), "failure not reported")
    assert PREFIX + "broken" in engine.console
    (line,) = [ln for ln in engine.console if "failed" in ln]
    assert line.startswith(PREFIX + "`echo broken >&2; exit 4` failed with exit code 4 after ")
    (workdir / "after.txt").write_text("still syncing")
    engine.until(lambda: target.far.read("after.txt") == b"still syncing", "sync stopped")
    target.far.write("down.txt", b"from the container")
    engine.until(lambda: read(workdir / "down.txt") == "from the container", "no download")


def _far_alive(target: Target, pid: int) -> bool:
    if target.container is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return target.far.sh(f"kill -0 {pid} 2>/dev/null && echo yes || true") == "yes"


HANG = "echo $$ >> ../onupload.pids; echo waiting; exec sleep 1000"


def _pids(target: Target) -> list[int]:
    text = target.far.sh(f"cat {target.far.root}/../onupload.pids 2>/dev/null || true")
    return [int(p) for p in text.split()]


def test_a_hanging_command_never_holds_the_sync_and_stops_with_podsync(
    target: Target, workdir: Path, engines: list[Engine]
) -> None:
    (workdir / "go").write_text("1")
    engine = start(engines, spec_for(target, workdir, UploadCommand(HANG, ("/go",))))
    engine.until(lambda: PREFIX + "waiting" in engine.console, "never started")
    (pid,) = _pids(target)
    engine.until(lambda: "running since" in (engine.thread.message or ""), "not in status")
    # It runs; the sync goes on both ways, and a new upload of go waits for it (queued).
    (workdir / "go").write_text("2")
    (workdir / "other.txt").write_text("x")
    engine.until(lambda: target.far.read("other.txt") == b"x", "upload held by the command")
    target.far.write("down.txt", b"y")
    engine.until(lambda: read(workdir / "down.txt") == "y", "download held by the command")
    assert len(_pids(target)) == 1 and _far_alive(target, pid)

    engine.thread.stop()  # as Ctrl-C does
    assert not _far_alive(target, pid), "the command outlived podsync"
    assert engine.console[-1] == f"{PREFIX}stopped `{HANG}`: podsync is stopping"


def _kill_agent(target: Target) -> None:
    if target.container is None:
        for pid in agent_pids(Path(target.far.root)):
            os.kill(pid, signal.SIGKILL)
        return
    for pid in container_watcher_pids(target.container):
        subprocess.run(
            ["docker", "exec", target.container, "kill", "-KILL", pid], check=False, timeout=60
        )


def test_a_command_cut_by_a_lost_connection_runs_again_after_the_reconnect(
    target: Target, workdir: Path, engines: list[Engine]
) -> None:
    (workdir / "go").write_text("1")
    engine = start(engines, spec_for(target, workdir, UploadCommand(HANG, ("/go",))))
    engine.until(lambda: len(_pids(target)) == 1, "never started")
    (first,) = _pids(target)
    _kill_agent(target)
    engine.until(lambda: len(_pids(target)) == 2, "not run again after the reconnect", 90)
    assert not _far_alive(target, first)
    assert engine.said("the connection ended; it runs again once the sync is back") == 1
    console = engine.console
    lost = next(i for i, ln in enumerate(console) if "connection lost" in ln)
    runs = [i for i, ln in enumerate(console) if ln.startswith(PREFIX + "running")]
    assert len(runs) == 2 and runs[0] < lost < runs[1]


def test_a_deletion_that_triggers_a_command_is_reported_as_deleted(
    target: Target, workdir: Path, engines: list[Engine]
) -> None:
    (workdir / "package.json").write_text('{"v":1}')
    (workdir / "lock.json").write_text("lock")
    count = UploadCommand("ls | wc -l > count.txt; echo counted", ("/lock.json",))
    engine = start(engines, spec_for(target, workdir, count))
    engine.until(lambda: engine.said("` done in") == 1, "the first run never finished")
    assert engine.runs()[-1].endswith("(lock.json uploaded)"), engine.runs()
    (workdir / "lock.json").unlink()
    engine.until(lambda: engine.said("` done in") == 2, "the deletion ran nothing")
    assert engine.runs()[-1].endswith("(lock.json deleted)"), engine.runs()

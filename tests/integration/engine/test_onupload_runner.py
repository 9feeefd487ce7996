"""The onUpload runner with real commands: a real ``sh`` on this machine through the local
transport (the same ``Transport.spawn`` the Docker and Kubernetes transports provide), and a
real ``docker exec`` that fails to start. Output streaming, order, queueing while a command
runs, a command that hangs, stopping on detach and the bounds on endless output."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tests.support.wait import async_wait_until

from podsync.core.entry import FILE, Entry
from podsync.core.plan import Plan, Upload
from podsync.engine.executor import Outcome
from podsync.engine.onupload import MAX_LINE_BYTES, MAX_OUTPUT_BYTES, OnUpload
from podsync.engine.report import Console, StatusBoard, SyncLog
from podsync.engine.spec import UploadCommand
from podsync.engine.status import SyncStatus
from podsync.transport.base import Transport
from podsync.transport.local import LocalTransport

NAME = "sync-0"
PREFIX = f"[{NAME} exec] "


class Rig:
    """One runner, its console/log/status, and a far folder its commands run in."""

    def __init__(self, tmp: Path, commands: list[UploadCommand], **options: float) -> None:
        self.far = tmp / "far"
        self.far.mkdir()
        self.out = io.StringIO()
        self.log = SyncLog(tmp / ".devspace")
        self.board = StatusBoard(tmp / ".devspace")
        self.board.add(SyncStatus(NAME, str(tmp), str(self.far), "", "watching"))
        self.runner = OnUpload(
            NAME,
            commands,
            console=Console(False, stream=self.out),
            log=self.log,
            board=self.board,
            **options,
        )

    @property
    def console(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def said(self, needle: str) -> int:
        return sum(needle in line for line in self.console)

    def attach(self, transport: Transport | None = None) -> None:
        self.runner.attach(transport or LocalTransport(self.far), str(self.far))

    def upload(self, *paths: str) -> None:
        """What the session does after a batch that uploaded ``paths``."""
        entry = Entry(FILE, 1, 1)
        plan = Plan(tuple(Upload(p, entry, None) for p in paths))
        self.runner.note(plan, Outcome(uploaded=list(paths)))

    def file(self, name: str) -> str:
        try:
            return (self.far / name).read_text()
        except FileNotFoundError:
            return ""

    async def until(self, predicate: Callable[[], object], what: str, timeout: float = 20) -> None:
        async def check() -> object:
            return predicate()

        await async_wait_until(check, timeout, message=f"{what}; console:\n{self.out.getvalue()}")


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 120))


#: Blocks until a file "go" appears, then removes it; counts its runs; fails loudly if two
#: runs ever overlap (the lock folder exists while one runs).
BLOCKING = (
    "mkdir lock || { echo OVERLAP; exit 9; }; echo run >> count;"
    " while [ ! -e go ]; do sleep 0.02; done; rm -f go; rmdir lock"
)


def test_output_is_streamed_line_by_line_from_the_sync_folder(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [UploadCommand("pwd; echo to-out; echo to-err >&2; printf last")])

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("package.json")
        await rig.until(lambda: rig.said("done in"), "the command never finished")
        await rig.runner.detach()

    run(body)
    lines = rig.console
    assert lines[0] == f"{PREFIX}running `pwd; echo to-out; echo to-err >&2; printf last`" + (
        " (package.json uploaded)"
    )
    assert lines[1:5] == [
        PREFIX + str(rig.far),
        PREFIX + "to-out",
        PREFIX + "to-err",
        PREFIX + "last",
    ]
    assert lines[5].startswith(f"{PREFIX}`pwd; echo to-out; echo to-err >&2; printf last` done in")
    log = (tmp_path / ".devspace" / "logs" / "sync.log").read_text()
    assert f"INFO  [{NAME} exec] to-err\n" in log


def test_terminal_escapes_from_the_container_are_shown_escaped(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [UploadCommand(r"printf '\033[2J\033]0;owned\007red\ttab\r\n\377\n'")])

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("x")
        await rig.until(lambda: rig.said("done in"), "never finished")
        await rig.runner.detach()

    run(body)
    assert rig.console[1:3] == [PREFIX + r"\x1b[2J\x1b]0;owned\x07red\ttab", PREFIX + "\ufffd"]
    assert "\x1b" not in rig.out.getvalue()
    log = (tmp_path / ".devspace" / "logs" / "sync.log").read_text()
    assert "\x1b" not in log and r"\x1b[2J" in log


def test_a_failing_command_is_one_warning_and_the_next_one_runs(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [UploadCommand("echo first; exit 3"), UploadCommand("echo second")])

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("a.txt")
        await rig.until(lambda: rig.said("`echo second` done"), "the second command never ran")
        await rig.runner.detach()

    run(body)
    failed = [line for line in rig.console if "failed" in line]
    assert failed == [
        f"{PREFIX}`echo first; exit 3` failed with exit code 3 after "
        + failed[0].split(" after ")[1]
    ]
    assert failed[0].endswith("s; the sync goes on")
    assert rig.console.index(f"{PREFIX}first") < rig.console.index(f"{PREFIX}second")
    log = (tmp_path / ".devspace" / "logs" / "sync.log").read_text()
    assert "WARN  [sync-0 exec] `echo first; exit 3` failed with exit code 3" in log


def test_only_matching_commands_run_in_the_order_written(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path,
        [
            UploadCommand("echo npm >> order", ("/package.json",)),
            UploadCommand("echo make >> order", ("*.c",)),
            UploadCommand("echo any >> order", None),
        ],
    )

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("src/x.c", "package.json")
        await rig.until(lambda: rig.said("`echo any >> order` done"), "not all ran")
        rig.upload("README.md")
        await rig.until(lambda: rig.said("`echo any >> order` done") == 2, "no second run")
        await rig.runner.detach()

    run(body)
    assert rig.file("order").split() == ["npm", "make", "any", "any"]
    assert [line.removeprefix(PREFIX) for line in rig.console if "running" in line] == [
        "running `echo npm >> order` (package.json uploaded)",
        "running `echo make >> order` (src/x.c uploaded)",
        "running `echo any >> order` (src/x.c uploaded)",
        "running `echo any >> order` (README.md uploaded)",
    ]


def test_held_during_the_first_pass_then_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [UploadCommand("echo run >> count", ("/package.json",))])

    async def body() -> None:
        rig.attach()  # connected: the first pass runs, commands wait
        rig.upload("package.json")
        rig.upload("package.json", "other")
        for _ in range(20):
            await asyncio.sleep(0)  # give the runner every chance to (wrongly) start
        assert (rig.runner.runs, rig.runner.schedule.running) == (0, None)
        rig.runner.release()  # the first pass is over
        await rig.until(lambda: rig.said("done in"), "never ran after the first pass")
        assert rig.runner.schedule.idle
        await rig.runner.detach()

    run(body)
    assert rig.file("count") == "run\n"


def test_batches_while_a_command_runs_make_exactly_one_more_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [UploadCommand(BLOCKING, ("/package.json",))])

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("package.json")
        await rig.until(lambda: rig.file("count") == "run\n", "first run never started")
        for _ in range(3):  # three more batches while it runs: one more run, after it
            rig.upload("package.json")
        (rig.far / "go").touch()
        await rig.until(lambda: rig.file("count") == "run\nrun\n", "no run after the batches")
        assert rig.runner.schedule.running == 0 and rig.runner.schedule.idle is False
        (rig.far / "go").touch()
        await rig.until(lambda: rig.said("done in") == 2, "second run never finished")
        assert rig.runner.schedule.idle  # nothing else is due: exactly one more run
        await rig.runner.detach()

    run(body)
    assert PREFIX + "OVERLAP" not in rig.console and rig.said("failed") == 0


def test_a_hanging_command_is_reported_and_shown_in_status(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [UploadCommand(BLOCKING)], notice_after=1.0)

    def message() -> str:
        return rig.board.rows[NAME].message or ""

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("x")
        await rig.until(lambda: "running since" in message(), "status does not show it")
        await rig.until(lambda: rig.said("still running after 1 s"), "no notice")
        assert "running for 1 s" in message()
        (rig.far / "go").touch()
        await rig.until(lambda: rig.said("done in"), "never finished")
        assert message() == ""
        await rig.runner.detach()

    run(body)
    notice = [line for line in rig.console if "still running" in line]
    assert notice == [
        f"{PREFIX}`{BLOCKING[:57]}...` still running after 1 s; the sync goes on"
        " (podsync stops the command when it stops)"
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_detach_stops_the_command_and_it_runs_again_after_the_next_first_pass(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, [UploadCommand("echo $$ >> pids; exec sleep 600")])

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("x")
        await rig.until(lambda: rig.file("pids"), "never started")
        first = int(rig.file("pids"))
        await rig.runner.detach()  # the connection ended
        assert not _alive(first), "the command outlived the connection"
        assert rig.said("stopped `echo $$ >> pids; exec sleep 600`: the connection ended;") == 1
        rig.attach()  # reconnected: held until the resync is over
        await rig.until(lambda: rig.runner.runs == 1, "the cut run was not counted")
        assert len(rig.file("pids").split()) == 1, "ran again before the first pass ended"
        rig.runner.release()
        await rig.until(lambda: len(rig.file("pids").split()) == 2, "did not run again")
        second = int(rig.file("pids").split()[1])
        assert _alive(second)

        async def session() -> None:  # podsync stopping: the session task is cancelled
            try:
                await asyncio.Event().wait()
            finally:
                await rig.runner.detach()

        task = asyncio.ensure_future(session())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not _alive(second)

    run(body)
    assert rig.said("podsync is stopping") == 1


def test_endless_output_is_shown_up_to_a_bound(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path,
        [
            UploadCommand("yes 0123456789abcdef | head -c 3000000"),
            UploadCommand("head -c 100000 /dev/zero | tr '\\0' x"),
        ],
    )

    async def body() -> None:
        rig.attach()
        rig.runner.release()
        rig.upload("x")
        await rig.until(lambda: rig.said("`head -c 100000") and rig.said("done in") == 2, "slow")
        await rig.runner.detach()

    run(body)
    shown = [line for line in rig.console if line == f"{PREFIX}0123456789abcdef"]
    assert MAX_OUTPUT_BYTES // 17 - 2 <= len(shown) <= MAX_OUTPUT_BYTES // 17 + 1
    hidden = (3000000 + 16) // 17 - len(shown)  # the last line is cut short
    assert rig.said(f"... {hidden} more lines of output not shown") == 1
    pieces = [line for line in rig.console if line.startswith(f"{PREFIX}xxx")]
    assert [len(p) - len(PREFIX) for p in pieces] == [MAX_LINE_BYTES] * 12 + [100000 % 8192]


@pytest.mark.docker
def test_a_command_that_cannot_start_is_not_dropped(tmp_path: Path) -> None:
    from podsync.transport.docker import DockerTransport

    rig = Rig(tmp_path, [UploadCommand("npm install")])

    async def body() -> None:
        rig.attach(DockerTransport("podsync-test-no-such-container"))
        rig.runner.release()
        rig.upload("package.json")
        await rig.until(lambda: rig.said("cannot start"), "no error", timeout=60)
        assert rig.runner.runs == 0 and not rig.runner.schedule.idle  # still due
        await rig.runner.detach()

    run(body)
    (line,) = [line for line in rig.console if "cannot start" in line]
    assert line == (
        f"{PREFIX}cannot start `npm install`: container podsync-test-no-such-container is not"
        " running: no such container; trying again shortly"
    )

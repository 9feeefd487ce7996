"""CLI shape: usage errors are one line and exit 2, --version, list sync on the shipped example,
status sync with and without a running engine (status file written by write_status)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import podsync
from podsync.cli.app import run_cli
from podsync.engine.status import StatusFile, SyncStatus, read_status, status_path, write_status

EXAMPLE = Path(podsync.__file__).parent / "examples" / "quickstart"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    return tmp_path


USAGE = [
    (
        ["sync"],
        "podsync: no target: pass exactly one of --pod, --label-selector, --image-name, "
        "--docker, --ssh, --local-target",
    ),
    (["sync", "--pod", "a", "--docker", "b"], "podsync: --pod and --docker: pass only one target"),
    (
        ["sync", "-l", "app=x", "--ssh", "me@host", "--local-target", "."],
        "podsync: --label-selector and --ssh and --local-target: pass only one target",
    ),
    (
        ["sync", "--label-selector", "app"],
        'podsync: --label-selector: "app" is not key=value; write e.g. app=web,tier=api',
    ),
    (
        ["sync", "--label-selector", "app=web,=x"],
        'podsync: --label-selector: "=x" is not key=value; write e.g. app=web,tier=api',
    ),
    (
        ["sync", "--docker", "c", "--bandwidth-upload", "-5"],
        "podsync: --bandwidth-upload: must be a positive whole number of KB/s, got -5",
    ),
    (
        ["sync", "--docker", "c", "--bandwidth-download", "0"],
        "podsync: --bandwidth-download: must be a positive whole number of KB/s, got 0",
    ),
    (
        ["sync", "--docker", "c", "--upload-only", "--download-only"],
        "podsync: --upload-only and --download-only: pass at most one of them",
    ),
    (
        ["sync", "--docker", "c", "--namespace", "x"],
        "podsync: --namespace: only applies to Kubernetes targets (--pod, --label-selector, "
        "--image-name), not --docker",
    ),
    (
        ["sync", "--docker", "c", "--all-replicas"],
        "podsync: --all-replicas: only applies to Kubernetes targets (--pod, --label-selector, "
        "--image-name), not --docker",
    ),
    (
        ["sync", "-l", "app=x", "--all-replicas", "--pick"],
        "podsync: --all-replicas and --pick: pass at most one of them",
    ),
    (
        ["sync", "-l", "app=x", "--all-replicas", "--download-only"],
        "podsync: --all-replicas and --download-only: replicas only receive uploads",
    ),
    (
        ["sync", "--ssh", "-oProxyCommand=x"],
        'podsync: --ssh: "-oProxyCommand=x" is not a valid [user@]host',
    ),
    (
        ["sync", "--ssh", "ssh://me@host:99999"],
        'podsync: --ssh: "ssh://me@host:99999" is not a valid ssh://[user@]host[:port] (port '
        "'99999' is not a number from 1 to 65535)",
    ),
    (
        ["sync", "--pod", "p", "--container-path", "app"],
        'podsync: --container-path: "app" is not an absolute path; write the full container '
        "path, e.g. /app",
    ),
    (
        ["sync", "--pod", "p", "--local-path", "missing"],
        'podsync: --local-path: "missing" does not exist; pass an existing folder',
    ),
    (
        ["sync", "--pod", "p", "--exclude", "!"],
        None,  # message owned by the exclude matcher; checked for shape below
    ),
    (
        ["sync", "--image-name", "web"],
        "podsync: --image-name: needs devspace.yaml (its images section); run in the project "
        "folder or pass --config FILE",
    ),
    (
        ["sync", "--frobnicate"],
        "podsync sync: No such option: --frobnicate (see `podsync sync --help`)",
    ),
    (
        ["sync", "--docker"],
        "podsync: Option '--docker' requires an argument. (see `podsync --help`)",
    ),
    (
        ["sync", "--docker", "c", "--bandwidth-upload", "lots"],
        None,  # typer's wording; one line naming the flag
    ),
    (
        ["sync", "--docker", "c", "--agent", "java"],
        None,
    ),
    (["teleport"], "podsync: No such command 'teleport'. (see `podsync --help`)"),
    (
        ["add", "sync", "--container=/app"],
        "podsync add sync: Missing option '--local'. (see `podsync add sync --help`)",
    ),
]


@pytest.mark.parametrize(("argv", "message"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_error_is_one_line_exit_2(
    cwd: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str | None
) -> None:
    code = run_cli(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1
    if message is not None:
        assert err == message + "\n"
    else:
        assert argv[-2] in err, err  # the flag whose value is wrong is named


def test_usage_errors_in_a_real_process(cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "podsync", "sync", "--pod", "a", "--ssh", "b"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "podsync: --pod and --ssh: pass only one target\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out == f"podsync {podsync.__version__}\n"


def test_console_script_version() -> None:
    exe = shutil.which("podsync")
    if exe is None:
        pytest.fail("the podsync console script is not installed (pip install -e .)")
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"podsync {podsync.__version__}\n")


def test_sync_reaches_the_engine_with_valid_flags(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid flags pass validation; whatever the engine answers is one line, never a traceback
    (today: "not landed yet", exit 1; later: a connection error for a container that does not
    exist)."""
    code = run_cli(["sync", "--docker", "podsync-no-such-container-x", "--no-watch"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("podsync: ") and "Traceback" not in err


def test_list_sync_on_the_example_project(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["list", "sync", "--config", str(EXAMPLE / "devspace.yaml")]) == 0
    out = capsys.readouterr().out
    for text in (
        "app.kubernetes.io/name=quickstart",
        "container: web",
        "./",
        "/app",
        "node_modules/",
        "upload: .env",
    ):
        assert text in out, out


def test_list_sync_without_entries(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "devspace.yaml").write_text("version: v1beta9\n")
    assert run_cli(["list", "sync"]) == 0
    assert capsys.readouterr().out.startswith("No sync paths are configured in devspace.yaml")


def test_status_without_running_sync(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["status", "sync"]) == 0
    assert capsys.readouterr().out == (
        f"No sync is running in {cwd.resolve()} (start one with `podsync dev` or `podsync sync`).\n"
    )
    assert run_cli(["status", "sync", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "running": False,
        "syncs": [],
        "unresolved_conflicts": 0,
    }


def _status(pid: int) -> StatusFile:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return StatusFile(
        pid=pid,
        updated=now,
        syncs=[
            SyncStatus(
                name="sync-0",
                local="/work/app",
                remote="kubernetes:pods app=web:/app",
                agent="python",
                state="initial sync",
                progress=0.42,
                conflicts=1,
                last_activity_time=now,
                last_activity="uploaded static/index.html",
                uploaded_files=3,
                uploaded_bytes=2048,
                downloaded_files=0,
                downloaded_bytes=0,
                message=None,
            ),
            SyncStatus(
                name="sync-1",
                local="/work/app/logs",
                remote="docker:web:/logs",
                agent="shell",
                state="watching",
            ),
        ],
    )


def test_status_with_a_running_sync(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = _status(os.getpid())
    write_status(status_path(cwd / ".devspace"), status)
    assert read_status(status_path(cwd / ".devspace")) == status
    assert run_cli(["status", "sync"]) == 0
    out = capsys.readouterr().out
    for text in ("sync-0", "/work/app ↔", "initial sync 42%", "uploaded", "2.0 KB", "watching"):
        assert text in out, out
    assert run_cli(["status", "sync", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is True and data["pid"] == os.getpid()
    assert [s["state"] for s in data["syncs"]] == ["initial sync", "watching"]


def test_status_of_a_dead_process_is_not_running(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    write_status(status_path(cwd / ".devspace"), _status(dead.pid))
    assert read_status(status_path(cwd / ".devspace")) is None
    assert run_cli(["status", "sync"]) == 0
    assert capsys.readouterr().out.startswith("No sync is running in")


def test_status_follows_the_config_folder(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = cwd / "proj"
    project.mkdir()
    (project / "devspace.yaml").write_text("")
    write_status(status_path(project / ".devspace"), _status(os.getpid()))
    assert run_cli(["status", "sync", "--config", "proj/devspace.yaml"]) == 0
    assert "sync-0" in capsys.readouterr().out


def test_unknown_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown sync state"):
        SyncStatus(name="s", local="a", remote="b", agent="python", state="dancing")  # type: ignore[arg-type]


def test_shell_completion_completes_commands() -> None:
    exe = shutil.which("podsync")
    if exe is None:
        pytest.fail("the podsync console script is not installed (pip install -e .)")
    env = {**os.environ, "_PODSYNC_COMPLETE": "complete_bash", "COMP_WORDS": "podsync st"}
    env["COMP_CWORD"] = "1"
    done = subprocess.run([exe], capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout.split()) == (0, ["status"])


def test_status_of_a_real_sync_then_ctrl_c(tmp_path: Path) -> None:
    """`podsync sync --local-target` writes the status file that `podsync status sync` reads;
    Ctrl-C stops it without a traceback and the status then says nothing is running."""
    from tests.support.wait import wait_until

    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    (here / "hello.txt").write_text("hi\n")
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "podsync", "sync", "--local-target", str(there)],
        cwd=here,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        status_file = status_path(here / ".devspace")

        def watching() -> bool:
            found = read_status(status_file)
            return found is not None and [s.state for s in found.syncs] == ["watching"]

        wait_until(watching, timeout=30, message="the sync never reported 'watching'")
        shown = subprocess.run(
            [sys.executable, "-m", "podsync", "status", "sync"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert shown.returncode == 0
        assert "watching" in shown.stdout and str(here) in shown.stdout
        assert (there / "hello.txt").read_text() == "hi\n"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
    assert read_status(status_path(here / ".devspace")) is None

"""Which paths a session never syncs: its own state folder wherever it lies under the local
folder (review 2.1: with ``--local-path ..`` the container could otherwise read the logs and
forge conflict records or saved states)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from podsync.engine import watch
from podsync.engine.session import _rules
from podsync.engine.spec import SyncSpec, TargetSpec


def spec(local: Path, state: Path, *exclude: str) -> SyncSpec:
    return SyncSpec(
        name="sync-0",
        local_root=local,
        target=TargetSpec(kind="docker", container="c"),
        state_dir=state,
        exclude=exclude,
    )


def test_state_folder_below_the_root_is_excluded(tmp_path: Path) -> None:
    (tmp_path / "proj" / ".devspace").mkdir(parents=True)
    rules = _rules(spec(tmp_path, tmp_path / "proj" / ".devspace", "!proj/.devspace/"))
    assert rules.excluded("proj/.devspace", True)
    assert rules.excluded("proj/.devspace/conflicts/open/x.json", False)
    assert not rules.excluded("proj", True)
    assert not rules.excluded("proj/.devspace2", True)


@pytest.mark.parametrize("name", ["we*ird [x]", "trailing ", "back\\slash"])
def test_state_folder_names_are_taken_literally(tmp_path: Path, name: str) -> None:
    state = tmp_path / name / ".devspace"
    rules = _rules(spec(tmp_path, state))
    assert rules.excluded(f"{name}/.devspace", True)
    assert not rules.excluded(f"{name[:-1]}X/.devspace", True)


def test_state_folder_outside_the_root_adds_nothing(tmp_path: Path) -> None:
    rules = _rules(spec(tmp_path / "src", tmp_path / ".devspace"))
    assert rules.exclude == ()


class _Held(watch.WatchPhase):
    def __init__(self) -> None:
        self._held = {"x"}
        self._held_first = self._held_at = time.monotonic()


def test_held_deletions_are_released_even_while_deleting_never_stops() -> None:
    """Review 1.4: a tool that keeps deleting must not hold every deletion forever."""
    phase = _Held()

    async def body() -> float:
        async def churn() -> None:
            while True:
                phase._held_at = time.monotonic()
                await asyncio.sleep(0.02)

        bumper = asyncio.ensure_future(churn())
        started = time.monotonic()
        released = await asyncio.wait_for(phase._deletions_settled(), 30)
        bumper.cancel()
        assert released == ["x"]
        return time.monotonic() - started

    waited = asyncio.run(body())
    assert waited >= watch.DELETE_SETTLE_SECONDS, "released before the burst could settle"

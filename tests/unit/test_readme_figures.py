"""Figures the README states are the ones the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from podsync.core.massdelete import MASS_MIN

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_states_the_mass_deletion_threshold() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    found = re.search(r"at least (\d+) synced files, more than half of them vanish", text)
    assert found is not None, "README does not state the mass-deletion threshold"
    assert int(found.group(1)) == MASS_MIN

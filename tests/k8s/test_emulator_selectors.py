"""The emulator's label/field selector parsing (pure), as described rows."""

from __future__ import annotations

import pytest

from k8s_emulator.selectors import SelectorError, parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "front", "env": "dev"}

ROWS = [
    ("empty matches all", "", True),
    ("equality", "app=web", True),
    ("double equals", "app==web", True),
    ("equality miss", "app=db", False),
    ("all terms must hold", "app=web,tier=back", False),
    ("not equal", "tier!=back", True),
    ("not equal on absent key", "zone!=x", True),
    ("set in", "tier in (front, back)", True),
    ("set in with comma split", "env=dev,tier in (back,x)", False),
    ("set notin", "env notin (prod)", True),
    ("exists", "app", True),
    ("does not exist", "!zone", True),
    ("does not exist miss", "!app", False),
]


@pytest.mark.parametrize(("text", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_label_selector(text: str, expected: bool) -> None:
    assert parse_label_selector(text)(LABELS) is expected


def test_field_selector() -> None:
    pod = {"metadata": {"name": "a", "namespace": "default"}, "status": {"phase": "Running"}}
    assert parse_field_selector("metadata.name=a")(pod)
    assert not parse_field_selector("metadata.name=a,status.phase!=Running")(pod)
    with pytest.raises(SelectorError, match="field label not supported"):
        parse_field_selector("spec.hostname=x")
    with pytest.raises(SelectorError):
        parse_label_selector("a=b,=c")

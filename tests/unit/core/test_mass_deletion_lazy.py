"""detect_mass_deletion asks its exclude questions lazily; its verdicts and messages must be
exactly those of the straightforward definition (every agreed file checked up front)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from podsync.core.ancestor import Ancestor, AncestorEntry
from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.excludes import Rules
from podsync.core.massdelete import MASS_MIN, detect_mass_deletion
from podsync.core.paths import RelPath
from podsync.core.policy import Policy

F = Entry(FILE, 1, 1)
KINDS = [F, Entry(DIR), Entry(LINK, target="x")]
NAMES = [f"{d}/f{i}" for d in ("keep", "logs", "tmp") for i in range(MASS_MIN)]


def reference(ancestor: Ancestor, remote: dict[RelPath, Entry], rules: Rules) -> str | None:
    policy = Policy(rules)
    agreed = [
        k
        for k, an in ancestor.items()
        if not an.conflict
        and an.local is not None
        and an.remote is not None
        and an.remote.kind == FILE
        and not policy.excluded(k, an.local, an.remote)
    ]
    if not agreed:
        return None
    if not any(not policy.excluded(k, e) for k, e in remote.items()):
        return (
            f"the container folder looks empty but {len(agreed)} synced file(s) were there;"
            " halting instead of deleting them locally (was the container recreated?)"
        )
    gone = sum(1 for k in agreed if remote.get(k) is None)
    if len(agreed) >= MASS_MIN and gone * 2 > len(agreed):
        return (
            f"{gone} of {len(agreed)} synced files vanished from the container folder at once;"
            " halting instead of deleting them locally"
        )
    return None


pairs = st.tuples(st.sampled_from(KINDS), st.sampled_from(KINDS), st.booleans())


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(NAMES), pairs, max_size=len(NAMES)),
    st.sets(st.sampled_from(NAMES)),
    st.sampled_from([(), ("logs/",), ("tmp/f1*",), ("logs/", "tmp/"), ("keep/",)]),
)
def test_lazy_verdict_equals_the_reference(
    raw: dict[str, tuple[Entry, Entry, bool]], present: set[str], exclude: tuple[str, ...]
) -> None:
    ancestor = {RelPath(k): AncestorEntry(lo, re, c) for k, (lo, re, c) in raw.items()}
    remote = {RelPath(k): F for k in present}
    rules = Rules(exclude=exclude)
    assert detect_mass_deletion(ancestor, remote, rules) == reference(ancestor, remote, rules)


def test_halting_cases_agree_with_the_reference_too() -> None:
    """Seeded cases around the thresholds: mostly agreed files, some excluded, some gone."""
    import random

    rng = random.Random(7)
    verdicts = {"none": 0, "empty": 0, "vanished": 0}
    for _ in range(400):
        names = rng.sample(NAMES, rng.randint(MASS_MIN, len(NAMES)))
        ancestor = {RelPath(k): AncestorEntry(F, F, rng.random() < 0.05) for k in names}
        keep = rng.random()
        remote = {RelPath(k): F for k in names if rng.random() < keep}
        if rng.random() < 0.2:
            remote = {RelPath("logs/x"): F}
        rules = Rules(exclude=rng.choice([(), ("logs/",), ("tmp/",)]))
        verdict = detect_mass_deletion(ancestor, remote, rules)
        assert verdict == reference(ancestor, remote, rules)
        kind = "none" if verdict is None else "empty" if "empty" in verdict else "vanished"
        verdicts[kind] += 1
    assert min(verdicts.values()) >= 20, verdicts

"""``core.ancestor.adopt_finer_mtimes``: a state saved when the shell agent read whole seconds
takes the nanoseconds of the same container file, and only of the same file."""

from __future__ import annotations

from podsync.core.ancestor import Ancestor, adopt_finer_mtimes, ancestor_entry
from podsync.core.entry import DIR, FILE, LINK, Entry
from podsync.core.paths import RelPath

S = 1_700_000_000 * 10**9


def record(remote: Entry | None) -> Ancestor:
    return {RelPath("f"): ancestor_entry(Entry(FILE, 3, S + 5), remote)}


def test_the_same_file_to_the_second_takes_the_listed_nanoseconds() -> None:
    ancestor = record(Entry(FILE, 3, S))
    listed = Entry(FILE, 3, S + 123_456_789)
    assert adopt_finer_mtimes(ancestor, {RelPath("f"): listed}) == 1
    assert ancestor[RelPath("f")].remote == listed
    assert ancestor[RelPath("f")].local == Entry(FILE, 3, S + 5)  # the local side as it was


def test_anything_else_stays_a_change() -> None:
    cases = [
        (Entry(FILE, 3, S), Entry(FILE, 4, S + 1)),  # another size
        (Entry(FILE, 3, S), Entry(FILE, 3, S + 10**9 + 1)),  # another second
        (Entry(FILE, 3, S), Entry(FILE, 3, S + 1, executable=True)),  # exec bit
        (Entry(FILE, 3, S), Entry(FILE, 3, S)),  # whole seconds both: nothing to adopt
        (Entry(FILE, 3, S + 7), Entry(FILE, 3, S + 8)),  # recorded with ns: a real change
        (Entry(FILE, 3, S), Entry(DIR)),
        (Entry(FILE, 3, S), None),
        (Entry(LINK, target="x"), Entry(LINK, target="x")),
        (None, Entry(FILE, 3, S + 1)),
    ]
    for old, now in cases:
        ancestor = record(old)
        before = dict(ancestor)
        listed = {} if now is None else {RelPath("f"): now}
        assert adopt_finer_mtimes(ancestor, listed) == 0, (old, now)
        assert ancestor == before


def test_negative_mtimes_keep_their_second() -> None:
    old = Entry(FILE, 1, -2 * 10**9)
    ancestor = record(old)
    assert adopt_finer_mtimes(ancestor, {RelPath("f"): Entry(FILE, 1, -2 * 10**9 + 250)}) == 1
    ancestor = record(old)
    assert adopt_finer_mtimes(ancestor, {RelPath("f"): Entry(FILE, 1, -(10**9) + 250)}) == 0

"""The guard against propagating a wiped or vanished side: a pure check on a full scan.

Owns: :func:`detect_mass_deletion` and :data:`MASS_MIN`. May import: the standard library
and ``podsync.core``; no I/O.

An emptied container folder (the container was recreated, a volume not mounted) or an
unmounted local folder looks exactly like the user deleting everything; the engine asks
this before it plans the deletions and halts with the message instead.
"""

from __future__ import annotations

from typing import Mapping, Optional

from podsync.core.ancestor import AncestorEntry
from podsync.core.entry import FILE, SnapshotView
from podsync.core.paths import RelPath
from podsync.core.policy import ExcludeRules, Policy


def detect_mass_deletion(
    ancestor: Mapping[RelPath, AncestorEntry],
    remote: SnapshotView,
    rules: ExcludeRules,
    *,
    side: str = "container",
    far: str = "container",
) -> Optional[str]:
    """A message when the container side looks emptied or vanished, else None.

    ``remote`` must be a full scan of that side. Halts when it shows no non-excluded entry
    while at least one agreed file exists, or when at least :data:`MASS_MIN` agreed files
    exist and more than half of them are gone at once. The engine stops with the message
    instead of propagating the deletions. ``side="local"`` asks the same of a local scan
    (an unmounted or wiped local folder must not empty the container either).
    """
    if side not in ("container", "local"):
        raise ValueError(f"side must be 'container' or 'local', not {side!r}")
    policy = Policy(rules)
    # This runs after every container-side batch of the watch phase, over the whole ancestor
    # (10k files: 12 ms when every agreed file was checked against the rules up front). Here
    # the files that are gone come from one set difference, and the exclude questions are
    # asked only where the verdict depends on them.

    def agreed_file(k: RelPath) -> bool:
        an = ancestor[k]
        return (
            not an.conflict
            and an.local is not None
            and an.remote is not None
            and an.remote.kind == FILE
            and not policy.excluded(k, an.local, an.remote)
        )

    def agreed() -> int:
        return sum(1 for k in ancestor if agreed_file(k))

    # ``far``: what the far side is called (a container, or a folder over ssh).
    far_folder = far if far.endswith("folder") else f"{far} folder"
    other = f"in the {far}" if side == "local" else "locally"
    folder = "local folder" if side == "local" else far_folder
    if not any(not policy.excluded(k, e) for k, e in remote.items()):
        count = agreed()
        if not count:
            return None
        return (
            f"the {folder} looks empty but {count} synced file(s) were there;"
            f" halting instead of deleting them {other}"
            + (f" (was the {far} recreated?)" if side == "container" else "")
        )
    gone = sum(1 for k in ancestor.keys() - remote.keys() if agreed_file(k))
    if not gone:
        return None
    total = agreed()
    if total >= MASS_MIN and gone * 2 > total:
        return (
            f"{gone} of {total} synced files vanished from the {folder} at once;"
            f" halting instead of deleting them {other}"
        )
    return None


#: Fewest agreed files for which a partial mass deletion is suspicious.
MASS_MIN = 20

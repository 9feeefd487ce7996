"""Entry point of the engine for the CLI: run a set of syncs until done or interrupted.

Owns: turning SyncSpecs into running sessions. May import: everything below ``cli``.
"""

from __future__ import annotations

from collections.abc import Sequence

from podsync.engine.spec import RunOptions, SyncSpec
from podsync.errors import NotImplementedYet


def run(specs: Sequence[SyncSpec], options: RunOptions) -> int:
    """Run ``specs`` (initial sync, then watch unless ``options.watch`` is False); return the
    process exit code. Blocks; handles SIGINT/SIGTERM by stopping cleanly."""
    raise NotImplementedYet("the sync engine has not landed yet (issue 3)")

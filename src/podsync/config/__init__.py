"""devspace.yaml -> typed, validated config; errors carry file:line:col and the option path;
the comment-preserving editor used by ``podsync add sync``.

Public API: :func:`load_config`, :func:`load_text`, :func:`add_sync`, :class:`ProjectConfig`,
:class:`SyncConfig`. Imported lazily: building the pydantic models costs ~0.2 s, which
``podsync --version`` and usage errors should not pay. Config is data: it imports nothing from
the engine (``podsync.cli.specs`` turns dev.sync entries into the engine's SyncSpecs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podsync.config.editor import add_sync
    from podsync.config.loader import load_config, load_text
    from podsync.config.models import ProjectConfig, SyncConfig

_WHERE = {
    "add_sync": "podsync.config.editor",
    "load_config": "podsync.config.loader",
    "load_text": "podsync.config.loader",
    "ProjectConfig": "podsync.config.models",
    "SyncConfig": "podsync.config.models",
}

__all__ = ["ProjectConfig", "SyncConfig", "add_sync", "load_config", "load_text"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'podsync.config' has no attribute {name!r}")

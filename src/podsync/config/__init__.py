"""devspace.yaml -> typed, validated config; errors carry file:line:col and the option path;
the comment-preserving editor used by ``podsync add sync``.

Public API: :func:`load_config`, :func:`to_sync_specs`, :func:`add_sync`, :class:`ProjectConfig`.
"""

from podsync.config.convert import to_sync_specs
from podsync.config.editor import add_sync
from podsync.config.loader import load_config, load_text
from podsync.config.models import ProjectConfig, SyncConfig

__all__ = ["ProjectConfig", "SyncConfig", "add_sync", "load_config", "load_text", "to_sync_specs"]

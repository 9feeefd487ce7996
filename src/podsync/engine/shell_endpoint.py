"""Public entry of the shell agent (containers without python3 >= 3.9).

Owns: nothing; re-exports :class:`ShellEndpoint`, :func:`probe` and
:class:`ShellCapabilities` from ``podsync.engine.shell``. May import:
``podsync.engine.shell``.
"""

from __future__ import annotations

from podsync.engine.shell.endpoint import ShellEndpoint
from podsync.engine.shell.probe import ShellCapabilities, probe

__all__ = ["ShellCapabilities", "ShellEndpoint", "probe"]

"""One exception tree for podsync.

Owns: every error type a user can see, and its process exit code.
May import: the standard library only (this module ships inside the container agent).

Every message is one sentence a user can act on. Foreign exceptions are translated at the
edge (``raise TransportError(...) from exc``) so nothing above a layer sees another library's
exception types.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class PodsyncError(Exception):
    """Base of every error podsync raises on purpose. ``str(err)`` is the one-line message."""

    exit_code = EXIT_RUNTIME


class UsageError(PodsyncError):
    """The command line is wrong (bad flag value, conflicting flags)."""

    exit_code = EXIT_USAGE


class ConfigError(PodsyncError):
    """devspace.yaml is missing or invalid. The message starts with ``FILE:LINE:COL: OPTION:``."""

    exit_code = EXIT_USAGE


class NotImplementedYet(PodsyncError):
    """A command exists in its final shape but its behaviour has not landed yet."""


class TransportError(PodsyncError):
    """The pipe to the other side could not be opened or broke."""


class PeerStalled(TransportError):
    """The other side is there but made no progress for the liveness period (a paused or
    overloaded container, a stalled agent). The session reconnects as for a broken pipe."""


class TargetError(PodsyncError):
    """The target container/pod could not be selected (none, several, not running)."""


class AgentError(PodsyncError):
    """The agent could not be installed or started, or it misbehaved."""


class ProtocolError(PodsyncError):
    """A peer broke the wire protocol. The message says which peer and how."""


class SafetyHalt(PodsyncError):
    """Sync stopped because going on could destroy data (e.g. the container side looks emptied)."""


class UnsafePath(ProtocolError):
    """A path from the other side would escape the sync root or is malformed."""

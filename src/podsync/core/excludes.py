"""The exclude rules of one sync: which paths are never synced, and which only one way.

Owns: :class:`Rules` (the spec's ``excludePaths``, ``uploadExcludePaths`` and
``downloadExcludePaths``, compiled once) and its wire form. Re-exports the gitignore matcher.
May import: the standard library, ``podsync.errors``, ``podsync.limits`` and
``podsync.core.gitignore``; no I/O (ships inside the container agent).

The three lists are three independent gitignore lists, OR-ed (as DevSpace does): a '!' in
``uploadExcludePaths`` cannot re-include what ``excludePaths`` excludes. On top of the user's
patterns the top-level ``.devspace`` entry (podsync's state folder: logs, conflicts, trash) is
always excluded, whatever its type, and no pattern can re-include it.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from podsync.core.gitignore import Matcher, validate_pattern
from podsync.errors import ProtocolError
from podsync.limits import STATE_DIR

__all__ = ["Matcher", "Rules", "validate_pattern"]

_STATE_PREFIX = STATE_DIR + "/"
_WIRE_KEYS = ("exclude", "upload", "download")


def _is_state(path: str) -> bool:
    return path == STATE_DIR or path.startswith(_STATE_PREFIX)


class Rules:
    """The three exclude lists of one sync, compiled once.

    Paths are RelPath strings ('a/b/c', no leading slash); the sync root is '' and is never
    excluded. ``is_dir`` is False for symlinks. Raises ValueError for an invalid pattern (the
    message names it; see :func:`validate_pattern`).
    """

    __slots__ = ("_download", "_exclude", "_upload")

    def __init__(
        self,
        exclude: Sequence[str] = (),
        upload_exclude: Sequence[str] = (),
        download_exclude: Sequence[str] = (),
    ) -> None:
        self._exclude = Matcher.compile(exclude)
        self._upload = Matcher.compile(upload_exclude)
        self._download = Matcher.compile(download_exclude)

    @property
    def exclude(self) -> Tuple[str, ...]:
        return self._exclude.patterns

    @property
    def upload_exclude(self) -> Tuple[str, ...]:
        return self._upload.patterns

    @property
    def download_exclude(self) -> Tuple[str, ...]:
        return self._download.patterns

    def excluded(self, path: str, is_dir: bool) -> bool:
        """excludePaths (+ .devspace): never synced either way, never scanned or watched."""
        return _is_state(path) or self._exclude.matches(path, is_dir)

    def blocks_upload(self, path: str, is_dir: bool) -> bool:
        """Local -> container is forbidden: excluded, or matched by uploadExcludePaths."""
        return self.excluded(path, is_dir) or self._upload.matches(path, is_dir)

    def blocks_download(self, path: str, is_dir: bool) -> bool:
        """Container -> local is forbidden: excluded, or matched by downloadExcludePaths."""
        return self.excluded(path, is_dir) or self._download.matches(path, is_dir)

    def prune(self, path: str, is_dir: bool) -> bool:
        """Scanners and watchers: do not enter, list or watch ``path``.

        Same answer as :meth:`excluded` for a walker that never enters pruned directories
        (it assumes no ancestor is excluded, which makes it cheaper). Paths blocked in one
        direction only are not pruned: the other direction still needs them.
        """
        return _is_state(path) or self._exclude.matches_here(path, is_dir)

    def to_wire(self) -> Dict[str, List[str]]:
        """JSON-able form, read back by :meth:`from_wire` on the other side."""
        return {
            "exclude": list(self._exclude.patterns),
            "upload": list(self._upload.patterns),
            "download": list(self._download.patterns),
        }

    @classmethod
    def from_wire(cls, raw: object) -> Rules:
        """Rules sent by the peer; raises ProtocolError when malformed or invalid."""
        if not isinstance(raw, dict):
            raise ProtocolError(f"exclude rules from the peer are not an object: {raw!r:.80}")
        if sorted(raw) != sorted(_WIRE_KEYS):
            raise ProtocolError(
                f"exclude rules from the peer have keys {sorted(map(str, raw))}, "
                f"expected {list(_WIRE_KEYS)}"
            )
        lists: List[List[str]] = []
        for key in _WIRE_KEYS:
            value = raw[key]
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise ProtocolError(
                    f"exclude rules from the peer: {key!r} is not a list of strings"
                )
            lists.append(value)
        try:
            return cls(lists[0], lists[1], lists[2])
        except ValueError as exc:
            raise ProtocolError(f"exclude rules from the peer are invalid: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rules):
            return NotImplemented
        return self.to_wire() == other.to_wire()

    def __hash__(self) -> int:
        return hash((self.exclude, self.upload_exclude, self.download_exclude))

    def __repr__(self) -> str:
        return (
            f"Rules(exclude={list(self.exclude)!r}, upload_exclude={list(self.upload_exclude)!r},"
            f" download_exclude={list(self.download_exclude)!r})"
        )

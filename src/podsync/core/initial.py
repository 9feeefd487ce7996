"""The initial sync: the spec's rules (FAQ "How does the initial sync work?") as a pure planner.

Owns: :func:`plan_initial_sync` and :class:`InitialResult`. May import: the standard library
and ``podsync.core``; no I/O.

Rules, per path (the spec, plus DevSpace v4.1 as measured on a real cluster):

- local only: upload (unless ``uploadExcludePaths`` blocks it; then left alone).
- container only: deleted in the container, unless ``excludePaths`` or ``uploadExcludePaths``
  protects it (then kept and recorded). With ``downloadOnInitialSync`` it is downloaded
  instead, unless ``downloadExcludePaths`` blocks that (then kept, never deleted: the user
  asked for container files to be fetched, not removed). A container-only directory is one
  deletion, unless something below it is protected: then the directory stays and only its
  unprotected content is deleted.
- on both sides and equal (same kind; files: same size, exec bit and mtime at the coarser
  clock's granularity): agreed, nothing moves. Same size and exec bit but different mtime:
  the engine fetches both SHA-256 digests (``needs_digest``) and plans again; equal content
  is agreed (never re-sent), different content falls to the mtime rule.
- local newer: upload. Same mtime (at the granularity) but different content: the local
  copy wins too (the local folder is the source of truth for the initial sync).
- container newer: neither side changes; a :class:`Conflict` is reported and recorded in
  the ancestor with ``conflict=True`` (a later local edit first saves the container's copy).
- kinds differ: between a file and a symlink the mtime rule applies as above. A local
  directory always replaces a container file or link (its mtime means nothing). A local
  file or link replaces a container directory only when every path inside it could have
  been deleted under the container-only rule (nothing protected, no
  ``downloadOnInitialSync``); otherwise both are left as they are and reported.

Modes: ``upload_only`` never downloads or deletes locally (container-only paths are deleted
as usual, or kept when ``downloadOnInitialSync`` asked for them). ``download_only`` mirrors
the container into the local folder without touching the container: container-only paths
are downloaded, container-newer files downloaded (the local copy goes to the trash),
local-only paths left alone, and a newer local copy is reported as a conflict and kept.

Excluded paths never appear in any action (nor in the ancestor).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import List, Mapping, Optional, Tuple

from podsync.core.ancestor import Ancestor
from podsync.core.entry import DIR, FILE, Entry, SnapshotView
from podsync.core.paths import ROOT, RelPath
from podsync.core.plan import (
    Action,
    Agree,
    Conflict,
    DeleteRemote,
    Download,
    Keep,
    Plan,
    Upload,
    advance_ancestor,
    agree,
)
from podsync.core.policy import ExcludeRules, PathIndex, Policy

Digests = Mapping[RelPath, Tuple[Optional[str], Optional[str]]]
_NO_DIGESTS: Digests = MappingProxyType({})

REMOTE_NEWER = "container copy is newer; local copy kept, container copy left as is"


@dataclass(frozen=True)
class InitialResult:
    """The initial-sync plan, the files whose digests are needed before they can be
    decided (no action is planned for them yet), and the ancestor expected once the plan
    has run (computed on first use: the engine records what really happened instead)."""

    plan: Plan
    needs_digest: Tuple[RelPath, ...]

    @cached_property
    def ancestor(self) -> Ancestor:
        return advance_ancestor({}, self.plan.actions)


def plan_initial_sync(
    local: SnapshotView,
    remote: SnapshotView,
    rules: ExcludeRules,
    *,
    download_on_initial_sync: bool,
    upload_only: bool = False,
    download_only: bool = False,
    granularity_ns: int = 1,
    digests: Digests = _NO_DIGESTS,
) -> InitialResult:
    """Plan the initial sync of ``local`` with ``remote`` (see the module docstring).

    ``granularity_ns`` is the coarser of the two sides' mtime clocks (10**9 when one side
    can only set whole seconds). ``digests`` maps a path to ``(local_sha256, remote_sha256)``
    (``None``: not a regular file any more); call again with them for ``needs_digest``.
    """
    policy = Policy(rules, upload_only, download_only)
    planner = _Initial(local, remote, policy, download_on_initial_sync, granularity_ns, digests)
    for top in planner.index.children(ROOT):
        planner.visit(top)
    plan = Plan.of(planner.out)
    return InitialResult(plan, tuple(sorted(planner.needs)))


class _Initial:
    def __init__(
        self,
        local: SnapshotView,
        remote: SnapshotView,
        policy: Policy,
        download: bool,
        granularity_ns: int,
        digests: Digests,
    ) -> None:
        self.local = local
        self.remote = remote
        self.policy = policy
        self.excluded = policy.rules.excluded
        # Container-only paths are fetched, not deleted (download-only mirrors the container).
        self.fetch = download or policy.download_only
        self.g = granularity_ns
        self.digests = digests
        self.index = PathIndex(local, remote)
        self.out: List[Action] = []
        self.needs: List[RelPath] = []

    def visit(self, p: RelPath) -> None:
        lo, re = self.local.get(p), self.remote.get(p)
        if lo is not None and re is not None and lo.kind == re.kind:
            # The common case, inlined (a no-op sync of 10k paths is nothing else): one
            # exclude question, as Policy.excluded asks for a single kind.
            if self.excluded(p, lo.kind == DIR):
                return
            if lo.kind == DIR:
                self.out.append(agree(p, lo, re, "directory on both sides"))
                self.visit_children(p)
            elif lo.same_content(re, self.g):
                self.out.append(agree(p, lo, re, "same size and mtime"))
            else:
                self.both(p, lo, re)
            return
        if self.policy.excluded(p, lo, re):
            return  # git semantics: nothing below an excluded path is included either
        if lo is not None and re is not None:
            if lo.kind == DIR and re.kind == DIR:
                self.out.append(Agree(p, lo, re, "directory on both sides"))
                self.visit_children(p)
            else:
                self.both(p, lo, re)
        elif lo is not None:
            self.local_only(p, lo)
        elif re is not None:
            self.remote_only(p, re)

    def visit_children(self, p: RelPath) -> None:
        for child in self.index.children(p):
            self.visit(child)

    def local_only(self, p: RelPath, lo: Entry) -> None:
        # Not uploadable: left alone; below a blocked directory everything is blocked too.
        if self.policy.can_upload(p, lo):
            self.out.append(Upload(p, lo, None, "local only"))
            if lo.kind == DIR:
                self.visit_children(p)

    def remote_only(self, p: RelPath, re: Entry) -> None:
        if self.fetch:
            if self.policy.can_download(p, re):
                self.out.append(Download(p, re, None, "container only, downloadOnInitialSync"))
                if re.kind == DIR:
                    self.visit_children(p)
            else:
                self.keep_subtree(p, "container only; download blocked, not deleted")
            return
        if not self.policy.can_upload(p, re):
            self.keep_subtree(p, "container only; protected by uploadExcludePaths")
        elif re.kind == DIR and self.protected_below(p):
            self.out.append(Keep(p, None, re, "container only; holds protected paths"))
            self.visit_children(p)
        else:
            self.out.append(DeleteRemote(p, re, "container only"))

    def protected_below(self, p: RelPath) -> bool:
        """Would deleting the container's ``p`` remove a path the rules protect?"""
        for k in self.index.below(p):
            re = self.remote.get(k)
            if re is not None and not self.policy.can_upload(k, re, self.local.get(k)):
                return True
        return False

    def keep_subtree(self, p: RelPath, reason: str, conflict: Optional[str] = None) -> None:
        """Leave ``p`` and everything below it as it is on both sides, recorded."""
        lo, re = self.local.get(p), self.remote.get(p)
        if conflict is not None:
            self.out.append(Conflict(p, lo, re, conflict))
        else:
            self.out.append(Keep(p, lo, re, reason))
        for k in self.index.below(p):
            lk, rk = self.local.get(k), self.remote.get(k)
            if not self.policy.excluded(k, lk, rk):
                self.out.append(Keep(k, lk, rk, reason))

    def both(self, p: RelPath, lo: Entry, re: Entry) -> None:
        """Both sides have ``p`` and at least one is not a directory."""
        if lo.same_content(re, self.g):
            self.out.append(Agree(p, lo, re, "same size and mtime"))
            return
        if (
            lo.kind == FILE
            and re.kind == FILE
            and lo.size == re.size
            and lo.executable == re.executable
        ):
            pair = self.digests.get(p)
            if pair is None:
                self.needs.append(p)
                return
            if pair[0] is not None and pair[0] == pair[1]:
                self.out.append(Agree(p, lo, re, "same content (SHA-256)"))
                return
        winner = self.winner(lo, re)
        if self.policy.download_only:
            self.both_download_only(p, lo, re, winner)
        elif winner == "remote":
            self.out.append(Conflict(p, lo, re, REMOTE_NEWER))
        elif not self.policy.can_upload(p, lo, re):
            self.keep_subtree(
                p, "", conflict="local copy differs but uploads of it are excluded; both kept"
            )
        elif re.kind == DIR:
            if self.fetch or self.protected_below(p):
                why = "local file, container directory with content sync must not delete; both kept"
                self.keep_subtree(p, "", conflict=why)
            else:
                self.out.append(DeleteRemote(p, re, "container directory replaced by local file"))
                self.out.append(Upload(p, lo, None, "local file replaces container directory"))
        elif lo.kind == DIR:
            self.out.append(DeleteRemote(p, re, "container file replaced by local directory"))
            self.out.append(Upload(p, lo, None, "local directory replaces container file"))
            self.visit_children(p)
        else:
            self.out.append(
                Upload(p, lo, re, "local newer" if winner == "local" else "same mtime, local wins")
            )

    def winner(self, lo: Entry, re: Entry) -> str:
        """``local``/``remote`` (newer at the granularity) or ``tie``; a directory's mtime
        means nothing, so a local directory wins and a container directory ties."""
        if lo.kind == DIR:
            return "local"
        if re.kind == DIR:
            return "tie"
        lt, rt = lo.mtime_ns // self.g, re.mtime_ns // self.g
        return "local" if lt > rt else "remote" if rt > lt else "tie"

    def both_download_only(self, p: RelPath, lo: Entry, re: Entry, winner: str) -> None:
        if winner != "remote" or not self.policy.can_download(p, lo, re):
            why = "local copy is not older; download-only sync keeps it"
            self.keep_subtree(p, "", conflict=why)
        else:
            self.out.append(Download(p, re, lo, "container newer"))

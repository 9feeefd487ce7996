"""The container side through POSIX ``sh`` + ``tar``, for containers without Python.

Owns: :class:`ShellEndpoint` (the Endpoint protocol over separate exec calls). May import:
the standard library, ``podsync.core``, ``podsync.errors``, ``podsync.limits``,
``podsync.transport.base`` and ``podsync.engine.{endpoint,hintbuffer,throttle,shell.*}``.

One exec per operation: a scan is one ``find``/``stat`` listing (excluded directories pruned
by ``find`` itself where the pattern translates exactly, the rest filtered here); an upload is
one tar stream extracted into a staging directory inside the root, then a generated script
checks each expectation and moves the files of each folder into place with one ``mv`` (a
rename per file: readers never see a partial file; ``engine.shell.writing``); a download is
one ``tar -c`` stream parsed incrementally; remote changes come from a metadata-polling loop.

Differences from the Python agent: mtimes are read in nanoseconds (``stat -c %y``) but set
in whole seconds (a ustar header has no more), so the two sides' mtimes are compared at one
second; remote changes are seen after up to one poll interval (0.5 s) instead of inotify's
milliseconds, and nothing is compressed (busybox has no zlib stream a shell can frame).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from podsync.core.entry import FILE, Entry, Problem, Snapshot
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath, ancestors
from podsync.engine.endpoint import DeleteItem, FileItem, WriteResult
from podsync.engine.hintbuffer import HintBuffer
from podsync.engine.shell import changes, scripts
from podsync.engine.shell.baseline import Baseline, below, minimal, signatures
from podsync.engine.shell.listing import (
    Record,
    listing_complete,
    parse_records,
    record_path,
    to_snapshot,
)
from podsync.engine.shell.poller import Poller
from podsync.engine.shell.probe import ShellCapabilities, probe
from podsync.engine.shell.reading import ShellSourceFile, digest_script, parse_digests, read_files
from podsync.engine.shell.writing import write_files
from podsync.engine.throttle import Throttle
from podsync.errors import (
    AgentError,
    ProtocolError,
    SafetyHalt,
)
from podsync.limits import POLL_INTERVAL_SECONDS, STATE_DIR
from podsync.transport.base import RunResult, Transport

#: Upper bound for one listing or change script (a big tree over a slow link).
EXEC_TIMEOUT = 600.0


class ShellEndpoint:
    """Endpoint for a container with ``sh`` and ``tar`` but no usable Python."""

    side = "container"
    #: The clock mtimes are compared at across sides: what ``tar -x`` sets has whole seconds
    #: (listings carry the nanoseconds, so a side is compared with itself exactly).
    mtime_granularity_ns = 10**9

    def __init__(
        self,
        transport: Transport,
        root: str,
        rules: Rules,
        *,
        capabilities: ShellCapabilities | None = None,
        description: str = "shell agent (no python3 >= 3.9 in the container)",
        upload_throttle: Throttle | None = None,
        download_throttle: Throttle | None = None,
        warn: Callable[[str], None] = lambda message: None,
        poll_interval: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self.agent_description = description
        self.transport = transport
        self.root = root
        self._prune: Callable[[RelPath, bool], bool] = rules.prune
        self._prune_tests = scripts.prune_tests(rules.exclude, always=[STATE_DIR])
        self._caps = capabilities
        self.upload_throttle = upload_throttle or Throttle(None)
        self.download_throttle = download_throttle or Throttle(None)
        self._warn = warn
        self._interval = poll_interval
        self._hints = HintBuffer()
        #: When each hinted change was seen: the poll listing's arrival (``engine.latency``).
        self.event_times = self._hints.times
        self._poller: Poller | None = None
        self._baseline = Baseline()
        self.read_problems: list[Problem] = []
        #: The container filesystem's identity, in the Python agent's format (same folder of
        #: ids), or None when it cannot be kept.
        self.fsid: str | None = None
        self.stderr_tail: list[str] = []
        #: Permission bits of files as last listed (a replaced file keeps its own).
        self._perms: dict[RelPath, int] = {}

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, watch: bool = True) -> None:
        """Probe the tools (unless given) and create the root if it is missing."""
        await self._capabilities()
        result = await self.transport.run(["sh", "-c", _PREPARE, "sh", self.root], timeout=60)
        if result.exit_code != 0:
            raise AgentError(
                f"{self.transport.description}: cannot create {self.root}: "
                + result.stderr.decode("utf-8", "replace").strip()[:200]
            )
        self.fsid = scripts.parse_fsid(result.stdout)
        if watch:
            await self._start_poller()

    async def close(self) -> None:
        if self._poller is not None:
            await self._poller.stop()
            self._poller = None

    async def _capabilities(self) -> ShellCapabilities:
        if self._caps is None:
            self._caps = await probe(self.transport)
        return self._caps

    def _stderr(self, line: str) -> None:
        self.stderr_tail = [*self.stderr_tail[-19:], line]

    async def _run(self, argv: Sequence[str], stdin: bytes = b"") -> bytes:
        return self._checked(await self.transport.run(argv, stdin=stdin, timeout=EXEC_TIMEOUT))

    def _checked(self, result: RunResult) -> bytes:
        out = result.stdout
        if out.startswith(b"=NOROOT"):
            raise SafetyHalt(
                f"the container folder {self.root} is gone ({self.transport.description});"
                " sync stopped so nothing is deleted locally"
            )
        if result.exit_code != 0 and not out:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise AgentError(
                f"{self.transport.description}: a shell command failed (exit"
                f" {result.exit_code}): {detail[-1] if detail else 'no output'}"
            )
        return out

    # -- observe ------------------------------------------------------------------------
    async def listing(self, under: Sequence[RelPath] = ()) -> list[Record]:
        """The raw records of one container-side listing (pruned by find, not filtered)."""
        argv = scripts.scan_argv(self.root, list(under), self._prune_tests)
        result = await self.transport.run(argv, timeout=EXEC_TIMEOUT)
        out = self._checked(result)
        if not out.startswith(b"=OK\n"):
            raise ProtocolError(f"the container's shell answered {out[:40]!r} to a listing")
        # The end first: a walk killed inside a record is a failed listing, not a garbled one.
        end = out.rfind(b"=DONE ")
        end = end if end >= 0 else len(out)
        listing_complete(out[end:], result.stderr)
        records, pos, _ = parse_records(out[:end], 4, links=True, final=True)
        if pos < end:
            listing_complete(out[pos:], result.stderr)  # a marker among the records
        self._remember(records)
        return records

    def _remember(self, records: list[Record]) -> None:
        for record in records:
            if record.kind == FILE:
                path, _ = record_path(record)
                if path:
                    self._perms[path] = record.mode & 0o777

    async def scan(self, under: Sequence[RelPath] = ()) -> Snapshot:
        roots = minimal([p for p in under if not self._pruned_above(p)])
        if under and not roots:
            return {}
        whole = not roots or roots == [RelPath("")]
        if not whole and scripts.argv_size(roots) > scripts.ARGV_BUDGET:
            whole = True  # too many subtrees for one command line: list all, keep the asked
        records = await self.listing([] if whole else roots)
        snapshot = to_snapshot(records, self._prune, self._warn)
        if whole and not under:
            self._baseline.scanned(records, snapshot)
        else:
            if whole and RelPath("") not in roots:  # a hinted "" is the whole tree
                wanted = set(roots)
                snapshot = {p: e for p, e in snapshot.items() if p in wanted or below(p, wanted)}
            self._baseline.note(records, snapshot)
        return snapshot

    def _pruned_above(self, path: RelPath) -> bool:
        return any(self._prune(a, True) for a in ancestors(path)) or path.split("/", 1)[
            0
        ].startswith(scripts.STAGE_PREFIX)

    async def digests(self, paths: Sequence[RelPath]) -> dict[RelPath, str | None]:
        if not paths or (self._caps is not None and not self._caps.sha256sum):
            return {p: None for p in paths}
        argv, stdin = scripts.piped_script(digest_script(self.root, paths))
        return parse_digests(await self._run(argv, stdin), paths)

    def read(self, paths: Sequence[RelPath]) -> AsyncIterator[ShellSourceFile]:
        return read_files(self, paths)

    async def hints(self) -> list[RelPath]:
        if self._poller is None:
            await self._start_poller()
        return await self._hints.take()

    async def _start_poller(self) -> None:
        if self._poller is not None:
            return
        self._poller = Poller(
            self.transport,
            self.root,
            self._prune_tests,
            self._interval,
            self._on_listing,
            lambda d, c, k: self._hint(self._baseline.changes(d, c, k, self._prune)),
            self._on_tick,
            self._hints.fail,
            self._stderr,
        )
        await self._poller.start()

    def _on_listing(self, records: list[Record]) -> None:
        snapshot = to_snapshot(records, self._prune, lambda message: None)
        self._hint(self._baseline.listing(signatures(records, snapshot), records))

    def _on_tick(self) -> None:
        self._hint(self._baseline.tick())

    def _hint(self, paths: list[RelPath]) -> None:
        if paths:
            self._hints.add(paths)

    # -- change -------------------------------------------------------------------------
    async def write(self, items: AsyncIterator[FileItem]) -> WriteResult:
        return await write_files(self, items)

    async def delete(self, items: Sequence[DeleteItem]) -> WriteResult:
        return await self._delete(items)

    async def _delete(self, items: Sequence[DeleteItem]) -> WriteResult:
        if not items:
            return WriteResult({}, [])
        digits = (await self._capabilities()).mtime_digits
        body = "".join(
            changes.delete_item(i, it.path, it.expect, digits) for i, it in enumerate(items)
        )
        script = (
            f"cd -- {scripts.q(self.root)} || {{ echo =NOROOT; exit 0; }}\n"
            + changes.PRELUDE
            + body
        )
        argv, stdin = scripts.piped_script(script)
        answers = changes.parse_answers(await self._run(argv, stdin), len(items))
        written: dict[RelPath, Entry | None] = {items[i].path: None for i in answers.done}
        self._baseline.forget(written)
        return WriteResult(written, [Problem(items[i].path, why) for i, why in answers.failed])


#: Staging dirs whose upload is over (the container was killed mid-upload, so no EXIT trap
#: ran): the shell that made one wrote its /proc stat line into ``.owner``; the dir is an
#: orphan when no process with that PID and start time (field 22) runs any more. Another
#: sync's upload in progress is left alone.
_ORPHANS = r"""
for d in .podsync-stage-*; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  o=; [ -f "$d/.owner" ] && read -r o <"$d/.owner"
  [ -n "$o" ] || continue
  set -- $o; [ $# -ge 22 ] || continue; p=$1; t=${22}; n=
  read -r n </proc/"$p"/stat 2>/dev/null
  if [ -n "$n" ]; then set -- $n; [ $# -ge 22 ] && [ "${22}" = "$t" ] && continue; fi
  rm -rf -- "$d"
done
"""

#: ``sh -c PREPARE sh ROOT``: create the root; remove orphaned staging dirs, and those without
#: an owner an interrupted upload left behind over an hour ago.
_PREPARE = (
    'mkdir -p -- "$1" && cd -- "$1" && { find . -maxdepth 1 -name ".podsync-stage-*" -mmin +60'
    " -exec rm -rf {} + 2>/dev/null; true; } || exit 1\n" + _ORPHANS + scripts.FSID
)

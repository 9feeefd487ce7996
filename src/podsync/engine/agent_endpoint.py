"""The container side through the Python agent, over the wire protocol.

Owns: the Endpoint operations in terms of requests (listings streamed in pieces, requests
naming many paths cut into batches, puts streamed with their results coming back as items
commit, file contents through ``agent_files``), hints and the agent's warnings. May import:
``podsync.core``, ``podsync.wire``, ``podsync.transport.base`` and ``podsync.engine``
(agent_files, agent_link, agent_requests, endpoint, hintbuffer, throttle).

Memory stays O(chunk) per message whatever the agent sends: a chunk beyond the size an item
announced, a chunk or listing that would inflate beyond its cap, or anything malformed is a
ProtocolError at once (the session reconnects), never a growing buffer or file.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from podsync.core.entry import Entry, Problem, Snapshot
from podsync.core.excludes import Rules
from podsync.core.paths import RelPath, is_within, minimal_roots
from podsync.engine.agent_files import AgentSourceFile, send_chunks
from podsync.engine.agent_link import AgentLink
from podsync.engine.agent_requests import result_of
from podsync.engine.endpoint import DeleteItem, FileItem, WriteResult
from podsync.engine.hintbuffer import HintBuffer
from podsync.engine.throttle import Throttle
from podsync.errors import AgentError, ProtocolError
from podsync.limits import CHUNK_BYTES
from podsync.transport.base import Channel
from podsync.wire import messages as m
from podsync.wire.frames import Frame

#: A container listing taking more than about this much memory is refused: a hostile
#: endless listing must not grow podsync's memory without bound. Counted on what arrives
#: (repeated paths included) as TREE_ENTRY_BYTES per entry plus its path: measured ~470
#: bytes per entry of a snapshot, so 192 MiB is ~350k entries of 60-character paths
#: (node_modules-sized trees are ~150k).
MAX_TREE_BYTES = 192 << 20
TREE_ENTRY_BYTES = 500
#: Hint listings kept until the engine asks for them (beyond: dropped, it scans instead).
MAX_FRESH_ENTRIES = 200_000
#: Distinct warnings remembered so that each is said once.
WARNINGS_KEPT = 10_000
#: Warnings shown per connection (the agent sends at most ~1000 per scan); beyond, one line
#: says the rest are not shown, so a flood cannot fill the terminal and the log.
WARNINGS_SHOWN = 5000


class AgentEndpoint:
    side = "container"

    def __init__(
        self,
        channel: Channel,
        description: str,
        *,
        compress: bool,
        upload_throttle: Throttle,
        download_throttle: Throttle,
        stderr_tail: Callable[[], str] = lambda: "",
        warn: Callable[[str], None] = lambda message: None,
        liveness: float | None = None,
    ) -> None:
        self.agent_description = description
        self.mtime_granularity_ns = 1
        #: The container filesystem's identity (see agent.server.filesystem_id), or None.
        self.fsid: str | None = None
        self._compress = compress
        self.upload_throttle = upload_throttle
        self.download_throttle = download_throttle
        self._warn = warn
        self._warned: set[str] = set()
        self._shown = 0
        # The agent already waits for a burst of events to settle before it sends hints, so
        # the engine takes them at once (a second debounce would only add latency).
        self._hints = HintBuffer(quiet=0.0)
        self._link = AgentLink(
            channel,
            on_hints=self._on_hints,
            on_warn=self._on_warn,
            on_failure=self._hints.fail,
            stderr_tail=stderr_tail,
            liveness=liveness,
        )
        #: For the latency figures (``engine.latency``): when each hinted change happened
        #: (local clock), when each of our writes was acknowledged, the agent's clock, and
        #: whether the agent stamps its hints (else they count from their arrival).
        self.event_times = self._hints.times
        self.applied_at: dict[RelPath, float] = {}
        self.clock = self._link.clock
        self.hint_stamps = False
        #: Listings that came with hints, by hinted root, until the engine asks for them.
        self._fresh: dict[RelPath, Snapshot] = {}
        self._fresh_writes: dict[RelPath, int] = {}
        #: The agent's count of completed writes, from the latest put/delete result.
        self._agent_writes = 0
        self.info: dict[str, Any] = {}
        #: Problems the agent reported while sending files (drained by the engine).
        self.read_problems: list[Problem] = []
        #: Paths the latest scan could not read: unknown, not gone (``core.paths.keep_unknown``).
        self.unreadable: list[RelPath] = []
        #: What the current scan's listing costs so far (see MAX_TREE_BYTES).
        self._listed = 0

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, rules: Rules, watch: bool) -> None:
        self._link.start()
        try:
            reply = await self._link.call(
                {"t": "hello", "rules": rules.to_wire(), "watch": watch, "compress": self._compress}
            )
        except BaseException:
            await self._link.close()
            raise
        header = reply.header
        info: dict[str, Any] = {"watcher": m.text_field(header, "watcher", "off")}
        for name in ("python", "root"):
            value = header.get(name)
            if isinstance(value, str) and len(value) <= 4096:
                info[name] = value
        granularity = header.get("granularity")
        if isinstance(granularity, int) and 0 < granularity <= 10**9:
            self.mtime_granularity_ns = granularity
        fsid = header.get("fsid")
        self.fsid = fsid if isinstance(fsid, str) and 0 < len(fsid) <= 200 else None
        self.info = info
        self._link.ping()  # the first of CLOCK_ROUNDS: the clock offset, before any hint

    async def close(self) -> None:
        await self._link.close()

    # -- from the agent, unasked ---------------------------------------------------------------
    def _on_hints(self, frame: Frame) -> None:
        arrived = time.time()
        paths = m.paths_from_wire(frame.header.get("paths"))
        seen = m.time_field(frame.header, "at")
        if seen is not None:
            self.hint_stamps = True
        if m.flag(frame.header, "listing"):
            listing = m.decode_listing(frame.body, m.flag(frame.header, "z"))
            writes = frame.header.get("w")
            stamp = writes if isinstance(writes, int) and not isinstance(writes, bool) else -1
            if sum(map(len, self._fresh.values())) + len(listing) > MAX_FRESH_ENTRIES:
                self._fresh.clear()
                self._fresh_writes.clear()
            for root in minimal_roots(paths):
                self._remember_fresh(root, listing, stamp)
        at = arrived if seen is None else self._link.clock.to_local(seen, arrived)
        self._hints.add(paths, at)

    def _on_warn(self, frame: Frame) -> None:
        for line in m.texts_from_wire(frame.header.get("lines")):
            if line in self._warned or self._shown > WARNINGS_SHOWN:
                continue
            self._shown += 1
            if self._shown > WARNINGS_SHOWN:
                self._warn(f"the agent sent more than {WARNINGS_SHOWN} warnings; not showing more")
                continue
            if len(self._warned) >= WARNINGS_KEPT:
                self._warned.clear()
            self._warned.add(line)
            self._warn(line)

    def _remember_fresh(self, root: RelPath, listing: Snapshot, writes: int) -> None:
        """Keep the listing of ``root`` that came with a hint; it supersedes older listings
        of paths below it and updates the listings of subtrees that contain it. ``writes`` is
        how many of our writes the agent had completed before it listed."""
        part = {p: e for p, e in listing.items() if is_within(p, root)}
        for known in [q for q in self._fresh if is_within(q, root)]:
            del self._fresh[known]
            del self._fresh_writes[known]
        for outer, snapshot in self._fresh.items():
            if is_within(root, outer):
                for stale in [p for p in snapshot if is_within(p, root)]:
                    del snapshot[stale]
                snapshot.update(part)
                self._fresh_writes[outer] = min(self._fresh_writes[outer], writes)
        self._fresh[root] = part
        self._fresh_writes[root] = writes

    def _note_writes(self, reply: Frame) -> None:
        writes = reply.header.get("w")
        if isinstance(writes, int) and not isinstance(writes, bool):
            self._agent_writes = max(self._agent_writes, writes)

    # -- Endpoint -----------------------------------------------------------------------------
    async def scan(self, under: Sequence[RelPath] = ()) -> Snapshot:
        if under and all(
            root in self._fresh and self._fresh_writes[root] >= self._agent_writes for root in under
        ):
            # A listing taken before one of our writes completed would undo that write in
            # the engine's picture: only listings that include every write are used.
            # The agent listed these subtrees when it sent the hints: no round trip needed.
            snapshot: Snapshot = {}
            self.unreadable = []  # hints come with a listing only when all was readable
            for root in under:
                snapshot.update(self._fresh.pop(root))
                del self._fresh_writes[root]
                for inner in [q for q in self._fresh if is_within(q, root)]:
                    del self._fresh[inner]  # already merged into the root's listing
                    del self._fresh_writes[inner]
            return snapshot
        self._fresh.clear()
        self._fresh_writes.clear()
        self._listed = 0
        snapshot = {}
        unreadable: list[RelPath] = []
        roots = minimal_roots(under) if under else []
        for batch in m.batches(roots, m.path_weight) if roots else [[]]:
            unreadable.extend(await self._scan_batch(batch, snapshot))
        self.unreadable = unreadable
        return snapshot

    async def _scan_batch(self, under: list[RelPath], snapshot: Snapshot) -> list[RelPath]:
        """Add the listing of ``under`` to ``snapshot``; the paths the agent could not read."""
        request = self._link.open("scan", frames=4)
        try:
            async with self._link.exclusive():
                await self._link.send({"t": "scan", "id": request.id, "under": under})
            pieces = 0
            ended = False
            while True:
                frame = await request.inbox.get()
                if frame.type != "list":
                    reply = result_of(frame)
                    return m.paths_from_wire(reply.header.get("unreadable", []))
                piece = m.decode_listing(frame.body, m.flag(frame.header, "z"))
                # Only a listing of nothing is an empty piece (see wire.messages.listing_pieces):
                # endless empty pieces would look like progress forever.
                if ended or (not piece and pieces):
                    raise ProtocolError("the agent sent an empty piece in the middle of a listing")
                ended = not piece
                pieces += 1
                self._listed += len(piece) * TREE_ENTRY_BYTES + sum(map(len, piece))
                if self._listed > MAX_TREE_BYTES:
                    raise ProtocolError(
                        f"the container tree is too large (over {MAX_TREE_BYTES >> 20} MiB of"
                        f" listing, {len(snapshot) + len(piece)} entries); exclude some of it"
                        " (excludePaths)"
                    )
                snapshot.update(piece)
        finally:
            self._link.finish(request)

    async def digests(self, paths: Sequence[RelPath]) -> dict[RelPath, str | None]:
        out: dict[RelPath, str | None] = {}
        for batch in m.batches(paths, m.path_weight):
            reply = await self._link.call({"t": "digest", "paths": batch})
            raw = reply.header.get("digests")
            if not isinstance(raw, dict):
                raise ProtocolError("the agent sent digests in a malformed answer")
            wanted = set(batch)
            for key, value in raw.items():
                path = m.path_from_wire(key)
                if path in wanted:
                    out[path] = value if isinstance(value, str) and len(value) == 64 else None
        return out

    async def read(self, paths: Sequence[RelPath]) -> AsyncIterator[AgentSourceFile]:
        for batch in m.batches(paths, m.path_weight):
            async for source in self._read_batch(batch):
                yield source

    async def _read_batch(self, paths: list[RelPath]) -> AsyncIterator[AgentSourceFile]:
        chunk = self.download_throttle.chunk_size(CHUNK_BYTES)
        rate = self.download_throttle.rate
        # Flow control: the agent sends at most ``window`` bytes ahead of what was consumed
        # (about a second of data under a bandwidth limit), so after a stall of the agent
        # what is still on the way is consumed soon and the silence counts.
        window = max(chunk, min(4 * CHUNK_BYTES, rate)) if rate else 4 * CHUNK_BYTES
        request = self._link.open("get", nbytes=window + CHUNK_BYTES)
        wanted = set(paths)
        source: AgentSourceFile | None = None
        try:
            async with self._link.exclusive():
                header = {"t": "get", "id": request.id, "paths": paths, "chunk": chunk}
                await self._link.send({**header, "compress": self._compress, "window": window})
            while True:
                if source is not None and not source.finished:
                    await source.skip()
                frame = await request.inbox.get()
                if frame.type != "item":
                    reply = result_of(frame)
                    self.read_problems.extend(m.problems_from_wire(reply.header.get("problems")))
                    return
                path = m.path_from_wire(frame.header.get("path"))
                if path not in wanted:
                    raise ProtocolError(f"the agent sent {path!r:.100}, which was not asked for")
                wanted.discard(path)
                entry = Entry.from_wire(frame.header.get("entry"))
                source = AgentSourceFile(self._link, self.download_throttle, request, path, entry)
                self._link.activity = f"while sending {path}"
                yield source
        finally:
            self._link.activity = ""
            self._link.finish(request)

    async def write(self, items: AsyncIterator[FileItem]) -> WriteResult:
        written: dict[RelPath, Entry | None] = {}
        problems: dict[RelPath, Problem] = {}
        sent: set[RelPath] = set()

        stamped = [0]

        def on_done(frame: Frame) -> None:
            self._merge_results(frame, sent, written, problems)
            stamped[0] = self._stamp_applied(written, stamped[0])

        async with self._link.exclusive():
            request = self._link.open("put", frames=4)
            request.on_done = on_done
            ended = False
            try:
                await self._link.send({"t": "put", "id": request.id}, flush=False)
                async for item in items:
                    sent.add(item.path)
                    await self._send_item(item)
                ended = True
                await self._link.send({"t": "end", "id": request.id})
                reply = result_of(await request.inbox.get())
            except BaseException:
                if not ended:
                    self._link.abandon(request)
                raise
            finally:
                self._link.activity = ""
                self._link.finish(request)
        self._merge_results(reply, sent, written, problems)
        self._stamp_applied(written, stamped[0])
        self._note_writes(reply)
        return WriteResult(written, list(problems.values()))

    def _stamp_applied(self, written: dict[RelPath, Entry | None], known: int) -> int:
        """Note now as the acknowledgement time of the paths ``written`` gained after its
        first ``known`` ones (results only add paths); returns how many it holds now."""
        now = time.time()
        for path, entry in itertools.islice(written.items(), known, None):
            if entry is not None:
                self.applied_at[path] = now
        return len(written)

    async def _send_item(self, item: FileItem) -> None:
        header = {
            "t": "item",
            "path": item.path,
            "entry": item.entry.to_wire(),
            "expect": m.expect_to_wire(item.expect),
        }
        await self._link.send(header, flush=False)
        if item.chunks is not None:
            self._link.activity = f"during the upload of {item.path}"
            await send_chunks(self._link, self.upload_throttle, self._compress, item.chunks)
            self._link.activity = ""

    @staticmethod
    def _merge_results(
        frame: Frame,
        sent: set[RelPath],
        written: dict[RelPath, Entry | None],
        problems: dict[RelPath, Problem],
    ) -> None:
        """Results of a put piece: only for paths this put sent (a hostile agent cannot grow
        them beyond the put)."""
        for path, entry in m.written_from_wire(frame.header.get("written")).items():
            if path not in sent:
                raise ProtocolError(f"the agent reported writing {path!r:.100}, never sent")
            written[path] = entry
        for problem in m.problems_from_wire(frame.header.get("problems")):
            if problem.path not in sent:
                raise ProtocolError(f"the agent reported a problem at {problem.path!r:.100}")
            problems[problem.path] = problem

    async def delete(self, items: Sequence[DeleteItem]) -> WriteResult:
        written: dict[RelPath, Entry | None] = {}
        problems: dict[RelPath, Problem] = {}
        for batch in m.batches(items, lambda item: m.path_weight(item.path) + 64):
            reply = await self._link.call(
                {"t": "delete", "items": [[i.path, m.expect_to_wire(i.expect)] for i in batch]}
            )
            self._merge_results(reply, {i.path for i in batch}, written, problems)
            self._note_writes(reply)
        return WriteResult(written, list(problems.values()))

    async def hints(self) -> list[RelPath]:
        return await self._hints.take()


__all__ = ["AgentEndpoint", "AgentError", "AgentSourceFile"]

"""Named, documented constants.

Owns: every tunable number of the engine and the agent. May import: nothing.
Ships inside the container agent.
"""

from __future__ import annotations

#: Local and remote watch events are coalesced for this long after the last one before a
#: scan of the hinted paths runs. DevSpace waits 600 ms; an editor's save touches a file 1-3
#: times within a millisecond or two, so 3 ms catches the burst without adding visible
#: latency (a save caught half-way is simply synced again by the next event).
DEBOUNCE_SECONDS = 0.003

#: Upper bound on how long a continuous stream of events may postpone a sync.
DEBOUNCE_MAX_SECONDS = 0.25

#: Maximum payload of one data frame. Large files are streamed in chunks of this size so
#: memory stays constant whatever the file size.
CHUNK_BYTES = 1 << 20

#: Frame header (JSON) size limit: a peer announcing more is broken or hostile.
MAX_HEADER_BYTES = 1 << 24

#: Frame body size limit (a chunk plus slack).
MAX_BODY_BYTES = CHUNK_BYTES + (1 << 16)

#: The engine pings an idle agent this often; the agent exits when it has heard nothing
#: for AGENT_IDLE_EXIT_SECONDS (covers exec protocols that cannot signal stdin EOF).
PING_INTERVAL_SECONDS = 10.0
AGENT_IDLE_EXIT_SECONDS = 45.0

#: Polling watcher interval (fallback when inotify is unavailable).
POLL_INTERVAL_SECONDS = 0.5

#: Only compress when the link is slower than this (bytes/s); zlib level 1 in Python
#: runs at ~140 MB/s here, a local docker exec pipe at ~450 MB/s.
COMPRESS_BELOW_LINK_BYTES_PER_SECOND = 100 * 1024 * 1024
COMPRESS_LEVEL = 1
#: A sample that shrinks less than this is treated as incompressible.
COMPRESS_MIN_SAVING = 0.1

#: Directory (relative to the project / sync root) holding logs, conflicts, trash, state.
STATE_DIR = ".devspace"

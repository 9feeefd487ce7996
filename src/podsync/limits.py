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

#: Frame header (JSON) size limit: a peer announcing more is broken or hostile. Requests
#: that carry lists (delete, digest, get) are cut into batches well below it (BATCH_*).
MAX_HEADER_BYTES = 1 << 20

#: Frame body size limit (a chunk plus slack).
MAX_BODY_BYTES = CHUNK_BYTES + (1 << 16)

#: Listings (scan answers, hint listings) travel in pieces of at most this many entries and
#: about this many bytes of JSON, so no frame grows with the tree. A piece decompresses to at
#: most LISTING_RAW_MAX_BYTES (larger is a hostile zip bomb, refused before it is inflated).
LISTING_CHUNK_ENTRIES = 4096
LISTING_CHUNK_BYTES = 256 * 1024
LISTING_RAW_MAX_BYTES = 1 << 20

#: Requests naming many paths (delete, digest, get) are cut into batches of at most this many
#: paths and about this many bytes; put results come back in pieces of the same bound.
BATCH_PATHS = 1000
BATCH_BYTES = 256 * 1024

#: Liveness is judged by progress, not by a reply within a fixed time: the peer is stalled when
#: it took in nothing it was sent, or made no progress on a request, for this long (while this
#: side was ready to receive). 20 s keeps detection of a dead or paused peer under 30 s.
LIVENESS_SECONDS = 20.0

#: The engine pings an idle agent this often (the ping is the "something sent" whose receipt
#: the agent acknowledges); the agent acknowledges what it read and reports progress on long
#: requests every KEEPALIVE_SECONDS. The agent exits when it has heard nothing for
#: AGENT_IDLE_EXIT_SECONDS (covers exec protocols that cannot signal stdin EOF).
PING_INTERVAL_SECONDS = 5.0
KEEPALIVE_SECONDS = 1.0
AGENT_IDLE_EXIT_SECONDS = 45.0

#: Shutdown: after ``bye`` the far side gets this long to end by itself before it is killed;
#: the whole shutdown of podsync is bounded by SHUTDOWN_SECONDS.
BYE_WAIT_SECONDS = 0.5
SHUTDOWN_SECONDS = 1.5

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

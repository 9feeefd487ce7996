"""Starting the agent before the engine is loaded.

Owns: :func:`start`. May import: the standard library, ``podsync.engine.spec``,
``podsync.transport`` and ``podsync.bootstrap``.

Loading the engine and setting a session up take about as long as ``docker exec`` and the
agent's start (~0.1 s each on this machine, a fifth of a no-op run). So for a Docker target
that may use the python agent, the CLI starts the very command the first connect would start
(the installed agent behind the transport's PID wrapper) on the loop the engine will run, and
both happen at once: the connect takes that process instead of starting one
(``transport.process.start_process``). One nobody took is killed when the loop ends
(``discard_ahead``); when the agent is not installed, the process says so and the connect
goes on as without it. The same command twice (two syncs of one container folder) is
started once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from podsync.engine.spec import SyncSpec


def start(specs: Sequence[SyncSpec]) -> asyncio.AbstractEventLoop | None:
    """A new event loop with the agents of ``specs``' Docker targets starting on it, or None
    when there is none to start (the engine then makes its own loop)."""
    wanted = [s for s in specs if s.target.kind == "docker" and s.target.container]
    # (a missing local folder halts before any connect: nothing is to start in the container)
    wanted = [s for s in wanted if s.agent != "shell" and s.local_root.is_dir()]
    if not wanted:
        return None
    # (here: a run without a Docker target does not load them before it needs them)
    from podsync.bootstrap.probe import launch_command
    from podsync.transport.docker import DockerTransport
    from podsync.transport.process import start_ahead

    loop = asyncio.new_event_loop()
    for spec in wanted:
        assert spec.target.container is not None
        transport = DockerTransport(spec.target.container)
        start_ahead(loop, transport.wrapped_argv(launch_command(spec.launch_root)))
    return loop

"""Reach the far side of one sync: transport, probe, agent choice, endpoint.

Owns: turning a TargetSpec into a connected remote Endpoint. May import: ``podsync.transport``,
``podsync.bootstrap``, ``podsync.engine`` endpoints.
"""

from __future__ import annotations

import collections
import os
import sys
from dataclasses import dataclass
from typing import Any

from podsync.bootstrap.probe import (
    Probe,
    agent_command,
    agent_path,
    install_agent,
    launch_command,
    probe,
)
from podsync.core.excludes import Rules
from podsync.engine.agent_endpoint import AgentEndpoint
from podsync.engine.spec import SyncSpec, TargetSpec
from podsync.engine.throttle import Throttle
from podsync.errors import (
    AgentError,
    PeerStalled,
    ProtocolError,
    TargetError,
    TransportError,
    UsageError,
)
from podsync.limits import COMPRESS_BELOW_LINK_BYTES_PER_SECOND
from podsync.transport.base import Transport


async def open_transport(spec: SyncSpec, log: Any) -> Transport:
    """The transport for ``spec.target``; for Kubernetes this selects the pod first (waiting
    for a Running and Ready one, saying what it waits for)."""
    target = spec.target
    if target.kind != "kubernetes":
        return make_transport(target)
    from podsync.transport import k8s_target

    def on_wait(waiting: Any) -> None:
        log(f"waiting for a pod: {waiting.message}")

    if target.pick:
        transport, _PICKED[id(target)] = await k8s_target.open_picked_target(
            target,
            _choose,
            timeout=pod_wait_seconds(),
            on_wait=on_wait,
            last_built_tag=_last_built_tag(spec),
            previous=_PICKED.get(id(target)),
        )
        return transport
    return await k8s_target.open_kubernetes_target(
        target, timeout=pod_wait_seconds(), on_wait=on_wait, last_built_tag=_last_built_tag(spec)
    )


#: Lines of the agent's stderr logged per connection, and characters kept of each.
AGENT_LOG_LINES = 10_000
AGENT_LINE_CHARS = 2000

#: --pick choices by target (its id: a session keeps its spec), so a reconnect goes back to
#: the chosen container, or to its workload's newest pod, without asking again.
_PICKED: dict[int, Any] = {}


def pod_wait_seconds() -> float:
    """How long to wait for a Running and Ready pod (PODSYNC_POD_WAIT_SECONDS, default 300)."""
    raw = os.environ.get("PODSYNC_POD_WAIT_SECONDS", "")
    try:
        return max(1.0, float(raw)) if raw else 300.0
    except ValueError:
        raise UsageError(
            f"PODSYNC_POD_WAIT_SECONDS={raw!r}: expected a number of seconds"
        ) from None


async def _choose(candidates: list[Any]) -> Any:
    """--pick with several candidates: a picker on a terminal; without one, one line listing
    them (exit 1)."""
    labels = [c.describe() for c in candidates]
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TargetError(
            f"--pick: {len(candidates)} containers match ({'; '.join(labels)}); run in a"
            " terminal to pick one, or name one with --pod and --container"
        )
    import questionary

    question = questionary.select("Which container should podsync sync with?", labels)
    try:
        # handle_sigint=False: prompt_toolkit would replace the runner's SIGINT handler and,
        # when done, put back Python's default, not ours (Ctrl-C then no longer stops podsync).
        # In the picker, Ctrl-C is a key press (raw mode) and ends here.
        answer = await question.application.run_async(handle_sigint=False)
    except (KeyboardInterrupt, EOFError):
        answer = None
    if answer is None:
        raise TargetError("--pick: no container chosen")
    return candidates[labels.index(answer)]


def _last_built_tag(spec: SyncSpec) -> str | None:
    """The tag DevSpace recorded for ``imageName`` in ``.devspace/generated.yaml``, if any."""
    name = spec.target.image_name
    path = spec.state_dir / "generated.yaml"
    if not name or not path.is_file():
        return None
    from ruamel.yaml import YAML

    from podsync.transport.k8s_select import last_built_tags

    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except Exception:  # a broken cache file is ignored, as DevSpace would rebuild it
        return None
    return last_built_tags(data if isinstance(data, dict) else {}).get(name)


def make_transport(target: TargetSpec) -> Transport:
    if target.kind == "local":
        from podsync.transport.local import LocalTransport

        assert target.local_dir is not None
        return LocalTransport(target.local_dir)
    if target.kind == "docker":
        from podsync.transport.docker import DockerTransport

        assert target.container is not None
        return DockerTransport(target.container)
    if target.kind == "ssh":
        from podsync.transport.ssh import SshTransport

        assert target.host is not None
        return SshTransport(target.host)
    raise UsageError(f"unknown target kind {target.kind!r}")


@dataclass
class Remote:
    endpoint: Any
    root: str
    transport: Transport
    why: str


def should_compress(transport: Transport, spec: SyncSpec) -> bool:
    """zlib only pays where the link is slower than compressing (~140 MB/s here)."""
    if spec.bandwidth_upload or spec.bandwidth_download:
        return True
    speed = transport.link_bytes_per_second
    return speed is None or speed < COMPRESS_BELOW_LINK_BYTES_PER_SECOND


async def remote_root(transport: Transport, spec: SyncSpec) -> str:
    if spec.target.kind == "local":
        assert spec.target.local_dir is not None
        return str(spec.target.local_dir.resolve())
    if spec.container_path:
        return spec.container_path
    return await transport.workdir()


def _choose_agent(found: Probe, spec: SyncSpec) -> tuple[str, str]:
    if spec.agent == "python":
        if not found.python_ok:
            raise AgentError("--agent=python was asked for but the container has no python3 >= 3.9")
        return "python", "python agent (forced with --agent=python)"
    if spec.agent == "shell":
        return "shell", "shell agent (forced with --agent=shell)"
    if found.python_ok:
        assert found.python is not None
        return "python", f"python agent (python3 {found.python[0]}.{found.python[1]} found)"
    if found.python is not None:
        why = f"python3 {found.python[0]}.{found.python[1]} is older than 3.9"
    else:
        why = "no python3 in the container"
    return "shell", f"shell agent ({why})"


async def connect(
    spec: SyncSpec,
    rules: Rules,
    *,
    watch: bool,
    log: Any,
    say: Any = None,
    transport: Transport | None = None,
) -> Remote:
    """Probe the target, install and start the right agent, and return the endpoint.
    ``log`` receives the agent's stderr lines; ``say`` what the user should see (waiting)."""
    transport = transport or await open_transport(spec, say or log)
    up = Throttle(spec.bandwidth_upload)
    down = Throttle(spec.bandwidth_download)

    def warn(message: str) -> None:
        (say or log)(f"warning: {message}")

    if spec.agent != "shell":
        # Fast path: the agent from an earlier run is there; one exec instead of three.
        fast = await _start_installed(transport, spec, rules, watch, log, warn, up, down)
        if fast is not None:
            return fast
    found = await probe(transport)
    kind, why = _choose_agent(found, spec)
    root = await remote_root(transport, spec)
    if kind == "shell":
        if not found.has_tar:
            raise AgentError(
                f"{transport.description}: the container has neither python3 >= 3.9 nor tar;"
                " install tar (or python3) in the image"
            )
        from podsync.engine.shell.watchdog import WatchedTransport
        from podsync.engine.shell_endpoint import ShellEndpoint

        shell = ShellEndpoint(
            WatchedTransport(transport),  # notices a paused or frozen container
            root,
            rules,
            description=why,
            upload_throttle=up,
            download_throttle=down,
            warn=warn,
        )
        await shell.start(watch=watch)
        return Remote(shell, root, transport, why)
    path = await install_agent(transport) if not found.installed else agent_path()
    endpoint = await _start_agent(
        transport, spec, rules, watch, log, warn, up, down, agent_command(path, root), why
    )
    return Remote(endpoint, root, transport, why)


async def _start_installed(
    transport: Transport,
    spec: SyncSpec,
    rules: Rules,
    watch: bool,
    log: Any,
    warn: Any,
    up: Throttle,
    down: Throttle,
) -> Remote | None:
    """Start the agent if this version is installed (None when it is not, or fails to start:
    the caller then probes, installs and explains)."""
    if spec.target.kind == "local":
        root = await remote_root(transport, spec)
    else:
        root = spec.launch_root
    try:
        endpoint = await _start_agent(
            transport, spec, rules, watch, log, warn, up, down, launch_command(root), "python agent"
        )
    except PeerStalled:
        raise  # it started and then stalled: trying again would only double the wait
    except (AgentError, TransportError, ProtocolError):
        return None
    info = endpoint.info
    resolved = info.get("root")
    python = info.get("python")
    if not isinstance(resolved, str) or not isinstance(python, str):
        await endpoint.close()
        return None
    major_minor = ".".join(python.split(".")[:2])
    endpoint.agent_description = f"python agent (python3 {major_minor} found)"
    return Remote(endpoint, resolved, transport, endpoint.agent_description)


async def _start_agent(
    transport: Transport,
    spec: SyncSpec,
    rules: Rules,
    watch: bool,
    log: Any,
    warn: Any,
    up: Throttle,
    down: Throttle,
    argv: list[str],
    why: str,
) -> AgentEndpoint:
    tail: collections.deque[str] = collections.deque(maxlen=20)
    logged = 0

    def on_stderr(line: str) -> None:
        # The agent says little (a line per trouble); what a broken or hostile one floods
        # stderr with must not fill the local disk through sync.log.
        nonlocal logged
        line = line[:AGENT_LINE_CHARS]
        tail.append(line)
        logged += 1
        if logged <= AGENT_LOG_LINES:
            log(line)
        elif logged == AGENT_LOG_LINES + 1:
            log(f"(the agent wrote more than {AGENT_LOG_LINES} lines; not logging more)")

    channel = await transport.spawn(argv, on_stderr)
    endpoint = AgentEndpoint(
        channel,
        why,
        compress=should_compress(transport, spec),
        upload_throttle=up,
        download_throttle=down,
        stderr_tail=lambda: "; ".join(tail),
        warn=warn,
    )
    try:
        await endpoint.start(rules, watch)
    except BaseException:
        await channel.kill()
        raise
    return endpoint

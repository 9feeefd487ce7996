"""Message bodies and fields of the wire protocol, encoded and validated.

Owns: how entries, listings and expectations travel. May import: the standard library,
``podsync.core`` and ``podsync.errors``. Everything decoded here comes from the other side
and is validated (paths through ``relpath``, entries through ``Entry.from_wire``), so the
rest of the code only ever sees safe values.

Message types (header ``t``), engine -> agent: ``hello``, ``scan``, ``digest``, ``put``
(followed by ``item``/``chunk`` frames and ``end``), ``delete``, ``get``, ``ping``, ``bye``.
Agent -> engine: ``hello``, ``result`` (answer to a request ``id``), ``item``/``chunk``
(streamed by ``get``), ``hints`` (unsolicited), ``error``.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from podsync.core.entry import ANY, Entry, Expect, Problem, Snapshot
from podsync.core.paths import RelPath, relpath
from podsync.errors import ProtocolError

#: Listings above this many bytes are compressed (they are JSON and shrink ~8x).
COMPRESS_LISTING_ABOVE = 64 * 1024


def encode_listing(snapshot: Snapshot) -> Tuple[bytes, bool]:
    """Body for a listing, and whether it is zlib-compressed."""
    raw = json.dumps([[p, e.to_wire()] for p, e in snapshot.items()], separators=(",", ":")).encode(
        "utf-8"
    )
    if len(raw) > COMPRESS_LISTING_ABOVE:
        return zlib.compress(raw, 1), True
    return raw, False


def decode_listing(body: bytes, compressed: bool) -> Snapshot:
    try:
        raw = zlib.decompress(body) if compressed else body
        items = json.loads(raw.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"malformed listing: {exc}") from None
    if not isinstance(items, list):
        raise ProtocolError("malformed listing: not a list")
    snapshot: Snapshot = {}
    for item in items:
        if not isinstance(item, list) or len(item) != 2:
            raise ProtocolError(f"malformed listing item {item!r}")
        path = relpath(item[0])
        if path == "":
            raise ProtocolError("listing names the root itself")
        snapshot[path] = Entry.from_wire(item[1])
    return snapshot


def expect_to_wire(expect: Expect) -> Any:
    if expect is ANY:
        return "any"
    if expect is None:
        return None
    assert isinstance(expect, Entry)
    return expect.to_wire()


def expect_from_wire(raw: Any) -> Expect:
    if raw == "any":
        return ANY
    if raw is None:
        return None
    return Entry.from_wire(raw)


def entry_or_none(raw: Any) -> Optional[Entry]:
    return None if raw is None else Entry.from_wire(raw)


def paths_from_wire(raw: Any) -> List[RelPath]:
    if not isinstance(raw, list):
        raise ProtocolError("expected a list of paths")
    return [relpath(p) for p in raw]


def problems_to_wire(problems: Sequence[Problem]) -> List[List[str]]:
    return [[p.path, p.message] for p in problems]


def problems_from_wire(raw: Any) -> List[Problem]:
    if not isinstance(raw, list):
        raise ProtocolError("expected a list of problems")
    out = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], str):
            raise ProtocolError(f"malformed problem {item!r}")
        out.append(Problem(relpath(item[0]), item[1]))
    return out


def written_from_wire(raw: Any) -> Dict[RelPath, Optional[Entry]]:
    if not isinstance(raw, list):
        raise ProtocolError("expected a list of written entries")
    out: Dict[RelPath, Optional[Entry]] = {}
    for item in raw:
        if not isinstance(item, list) or len(item) != 2:
            raise ProtocolError(f"malformed written entry {item!r}")
        out[relpath(item[0])] = entry_or_none(item[1])
    return out


def int_field(header: Dict[str, Any], name: str) -> int:
    value = header.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"message {header.get('t')!r} lacks integer field {name!r}")
    return value

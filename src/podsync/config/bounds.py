"""Limits that keep a hostile or broken devspace.yaml from costing unbounded time or memory.

Owns: :func:`check_bounds`, run on the text before anything builds a tree from it, and the
limits below. May import: ruamel.yaml, podsync.errors, the standard library.

YAML can describe far more than it writes. An alias (``*a``) stands for a whole node, so
nine levels of nine aliases (the "billion laughs" shape) name 9**9 values in 300 bytes;
loading shares them, but everything that walks the result (conversion to plain values,
validation, the editor) expands them, for minutes and gigabytes. Deep flow nesting
(``[[[[...]]]]``) costs ruamel's scanner time quadratic in the depth and its composer
recursion. So the parser's event stream (lazy, and not recursive) is checked first and
stops at the first event past a limit, and only then is the tree built:

- at most :data:`MAX_CHARS` characters (a hand-written config is a few KB);
- at most :data:`MAX_NODES` values once every alias is expanded (each alias counts as the
  size of the node it names). This keeps aliases usable, including merge keys
  (``<<: *defaults``) as DevSpace configs use them, while a bomb fails at the alias that
  crosses the limit, after a few hundred events, well within a second;
- at most :data:`MAX_DEPTH` levels of nesting;
- no alias inside the node it names (a loop: every walk of it would never end).

Each error is one line ``FILE:LINE:COL: OPTION: problem; fix`` at the offending event.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    ScalarEvent,
)

from podsync.errors import ConfigError

#: Characters in the whole file. ruamel reads plain text at ~1 MB/s (blank lines are the
#: slowest): 128 K keeps any file well under a second.
MAX_CHARS = 128 * 1024
#: Values (scalars and collections) in the document with every alias expanded. ruamel
#: parses ~10,000 values a second: 5,000 bounds a file of many small values to ~0.5 s, and
#: is still ten times what a large hand-written DevSpace config holds.
MAX_NODES = 5_000
#: Nesting levels of mappings and sequences.
MAX_DEPTH = 64


@dataclass
class _Level:
    """One open mapping or sequence: where in it the parser is."""

    is_map: bool
    anchor: str | None
    start: int
    index: int = -1
    key: str | int | None = None
    at_key: bool = False


@dataclass
class _Walk:
    display: str
    levels: list[_Level] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def option(self) -> str:
        out = ""
        for level in self.levels:
            part = level.index if not level.is_map else level.key
            if part is None:
                break
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "(top level)"

    def fail(self, event: Event, problem: str) -> ConfigError:
        mark = event.start_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return ConfigError(f"{self.display}:{line}:{col}: {self.option()}: {problem}")

    def place(self, event: Event) -> None:
        """Move the innermost open collection on to the node ``event`` starts."""
        if not self.levels:
            return
        level = self.levels[-1]
        if not level.is_map:
            level.index += 1
            return
        level.at_key = not level.at_key
        if level.at_key:
            value = event.value if isinstance(event, ScalarEvent) else "?"
            level.key = _shown_key(value)

    def node(self, event: Event) -> None:
        if isinstance(event, AliasEvent):
            name = str(event.anchor)
            if any(level.anchor == name for level in self.levels):
                raise self.fail(
                    event,
                    f"alias *{name} is used inside the value it names, a loop without end; "
                    "remove it",
                )
            self.total += self.sizes.get(name, 1)
            if self.total > MAX_NODES:
                raise self.fail(
                    event,
                    f"aliases expand the file to more than {MAX_NODES} values (an alias "
                    "bomb?); write the values out instead of nesting aliases",
                )
            return
        self.total += 1
        if self.total > MAX_NODES:
            raise self.fail(
                event,
                f"the file holds more than {MAX_NODES} values; podsync reads devspace.yaml "
                "files up to that size (is this the right file?)",
            )
        if isinstance(event, ScalarEvent):
            if event.anchor:
                self.sizes[str(event.anchor)] = 1
        elif isinstance(event, CollectionStartEvent):
            if len(self.levels) >= MAX_DEPTH:
                raise self.fail(
                    event, f"nested more than {MAX_DEPTH} levels deep; flatten the structure"
                )
            is_map = isinstance(event, MappingStartEvent)
            anchor = str(event.anchor) if event.anchor else None
            self.levels.append(_Level(is_map, anchor, self.total - 1))

    def end(self) -> None:
        level = self.levels.pop()
        if level.anchor is not None:
            self.sizes[level.anchor] = self.total - level.start


def _shown_key(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Where a flow collection or a quoted scalar may start: not after a plain character (so the
# '[' of "x[1]" and the quote of "don't" are left alone), and a comment's '#' after a space.
_TOKEN = re.compile(
    r"""(?P<open>(?<![^\s:,\[{?-])[\[{])|(?P<close>[\]}])"""
    r"""|(?P<quote>(?<![^\s:,\[{?-])['"])|(?P<comment>(?<!\S)\#)"""
)
_QUOTED_END = {'"': re.compile(r'(?:[^"\\]|\\.)*"', re.S), "'": re.compile(r"(?:[^']|'')*'")}


def deep_flow_at(text: str) -> int | None:
    """Offset of the flow opener ('[' or '{') nested more than MAX_DEPTH deep, or None.

    A regex pass, linear in the text. ruamel's scanner looks ahead up to 1024 characters
    for a possible key at each of those openers, at a cost per token that grows with the
    depth: 5,000 nested '[' cost 1.3 s before the parser yields the event that is too
    deep. Quoted scalars and comments are skipped; plain scalars that hold brackets make
    the count low, never high, so only a real deep nesting is refused here."""
    depth, pos = 0, 0
    while True:
        found = _TOKEN.search(text, pos)
        if found is None:
            return None
        pos = found.end()
        kind = found.lastgroup
        if kind == "open":
            depth += 1
            if depth > MAX_DEPTH:
                return found.start()
        elif kind == "close":
            depth = max(0, depth - 1)
        elif kind == "quote":
            closed = _QUOTED_END[found.group()].match(text, pos)
            pos = closed.end() if closed else len(text)
        else:
            newline = text.find("\n", pos)
            pos = newline if newline != -1 else len(text)


def _walk_events(walk: _Walk, text: str) -> None:
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, CollectionEndEvent):
            walk.end()
        elif isinstance(event, (ScalarEvent, AliasEvent, CollectionStartEvent)):
            walk.place(event)
            walk.node(event)
        elif isinstance(event, DocumentStartEvent):
            walk.levels.clear()


def _too_deep(text: str, display: str, offset: int) -> ConfigError:
    """The error for a flow opener at ``offset``; the option is where the events of the
    text before it lead (that prefix is cheap to parse: it is at most MAX_DEPTH deep)."""
    walk = _Walk(display)
    with contextlib.suppress(YAMLError, ConfigError):
        _walk_events(walk, text[:offset])
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return ConfigError(
        f"{display}:{line}:{col}: {walk.option()}: nested more than {MAX_DEPTH} levels deep; "
        "flatten the structure"
    )


def check_bounds(text: str, display: str) -> None:
    """Raise ConfigError when ``text`` is beyond the limits above. YAML syntax errors are
    left to propagate as ruamel raises them (the caller words those)."""
    if len(text) > MAX_CHARS:
        raise ConfigError(
            f"{display}:1:1: (top level): the file has {len(text) // 1024} K characters; "
            f"podsync reads devspace.yaml files up to {MAX_CHARS // 1024} K (is this the "
            "right file?)"
        )
    offset = deep_flow_at(text)
    if offset is not None:
        raise _too_deep(text, display, offset)
    _walk_events(_Walk(display), text)

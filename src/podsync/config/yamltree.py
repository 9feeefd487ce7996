"""Reading devspace.yaml as a round-trip tree that remembers where every node is.

Owns: parsing text with ruamel.yaml's round-trip loader, translating its errors into one-line
:class:`ConfigError`, locating a node by option path (1-based line/column), rendering option
paths (``dev.sync[0].labelSelector``) and converting the tree to plain Python values for
validation. May import: ruamel.yaml, podsync.config.bounds, podsync.errors, the standard
library.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarfloat import ScalarFloat
from ruamel.yaml.scalarint import ScalarInt

from podsync.config.bounds import check_bounds
from podsync.errors import ConfigError

Loc = Sequence[str | int]


def display_name(path: Path) -> str:
    """How errors name the file: as the user gave it, or relative to the cwd when inside it."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_text(text: str, display: str) -> Any:
    """Parse ``text`` with the round-trip loader; YAML errors become one-line ConfigErrors.
    The text is checked against ``config.bounds`` first (size, alias expansion, depth)."""
    try:
        check_bounds(text, display)
        return YAML(typ="rt").load(text)
    except ConfigError:
        raise
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = one_line(str(exc.problem or exc.context or "malformed YAML"))
        fix = "fix the indentation or quoting"
        if problem.startswith("but ") and exc.context:  # "expected X" lives in the context
            problem = f"{one_line(str(exc.context))} {problem}"
        if "another document" in problem:
            fix = "keep a single YAML document (remove the extra ---)"
        raise ConfigError(f"{display}:{line}:{col}: YAML syntax error: {problem}; {fix}") from None
    except YAMLError as exc:
        raise ConfigError(f"{display}:1:1: YAML syntax error: {one_line(str(exc))}") from None
    except Exception as exc:  # ruamel's constructors raise plain errors on odd scalars
        # ruamel parsed the text but could not build a value ("._" resolves as a float and
        # fails with ValueError, "-_" as an int and fails with IndexError)
        line, col, value = _unbuildable_scalar(text)
        raise ConfigError(
            printable(
                f"{display}:{line}:{col}: YAML value {value!r} cannot be read ({exc}); "
                "put it in quotes"
            )
        ) from None


def _unbuildable_scalar(text: str) -> tuple[int, int, str]:
    """Position and text of the first scalar the round-trip constructor rejects."""
    yaml = YAML(typ="rt")
    stack: list[Any] = [yaml.compose(text)]
    while stack:
        node = stack.pop(0)
        if isinstance(node, ScalarNode):
            try:
                yaml.constructor.construct_object(node, deep=True)
            except Exception:  # see parse_text
                return (node.start_mark.line + 1, node.start_mark.column + 1, str(node.value))
        elif isinstance(node, MappingNode):
            stack[:0] = [part for pair in node.value for part in pair]
        elif isinstance(node, SequenceNode):
            stack[:0] = list(node.value)
    return (1, 1, "")


def read_text(path: Path, display: str) -> str:
    """Read the file; a missing or unreadable file is a ConfigError (exit 2)."""
    try:
        # newline="": keep CRLF as written, so the editor can write it back unchanged
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(
            f"{display}: file not found; run podsync in the folder that holds devspace.yaml "
            "or pass --config FILE"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{display}: is a folder, not a file; pass --config FILE") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{display}: is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{display}: cannot be read ({reason}); check its permissions") from None


def one_line(text: str) -> str:
    return " ".join(text.split())


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x00``) so a message built from
    user values stays one line whatever they contain."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def option_path(loc: Loc) -> str:
    """``("dev", "sync", 0, "labelSelector")`` -> ``dev.sync[0].labelSelector``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def position(root: Any, loc: Loc, want: Literal["key", "value"] = "value") -> tuple[int, int]:
    """1-based (line, column) of the node at ``loc``: of its key or of its value.

    Walks as deep as the tree allows; a path that leaves the tree (a missing option) yields
    the position of the deepest node that exists, which is where the fix belongs.
    """
    node = root
    best = _start(root)
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            key_pos = _lc(node, "key", part)
            val_pos = _lc(node, "value", part)
            best = key_pos or best if last and want == "key" else val_pos or key_pos or best
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            best = _lc(node, "item", part) or best
            node = node[part]
        else:
            break
    return best


def _start(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return (1, 1)
    return (lc.line + 1, lc.col + 1)


def _lc(node: Any, kind: str, part: str | int) -> tuple[int, int] | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        line, col = getattr(lc, kind)(part)
    except (KeyError, IndexError, TypeError):
        return None
    return (int(line) + 1, int(col) + 1)


def to_plain(node: Any) -> Any:
    """Round-trip types (CommentedMap, ScalarInt, ScalarBoolean...) -> plain Python values, so
    strict validation sees ``bool``/``int``/``str`` and not their ruamel subclasses."""
    if isinstance(node, dict):
        return {to_plain(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, bool):
        return node
    if isinstance(node, ScalarInt):
        return int(node)
    if isinstance(node, ScalarFloat):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def describe(value: Any) -> str:
    """Say what the user wrote, for "expected X, got Y" messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'the string "{printable(shown)}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to ``word`` (difflib), or None when nothing is close."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None

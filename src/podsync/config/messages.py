"""Turning pydantic validation errors into one actionable sentence each.

Owns: the wording of type/shape errors in devspace.yaml and the "did you mean" suggestions.
May import: podsync.config.models, podsync.config.yamltree, the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from podsync.config.models import (
    BANDWIDTH_OPTIONS,
    EXEC_OPTIONS,
    ON_UPLOAD_OPTIONS,
    SYNC_OPTIONS,
)
from podsync.config.yamltree import describe, did_you_mean

#: Options podsync reads in top-level and dev sections (for suggestions only).
_KEY_HINT = "write it in quotes"


#: DevSpace's options around onUpload.exec that podsync does not take, and what to do instead.
_UNSUPPORTED_ON_UPLOAD = {
    "args": "podsync runs command through sh -c in the container: write the arguments into command",
    "local": "podsync runs onUpload commands in the container only",
    "restartContainer": "podsync supports only exec under onUpload",
    "execRemote": "podsync supports only exec under onUpload",
}


def _choices(parent: Sequence[str | int]) -> tuple[str, ...]:
    if parent and parent[-1] == "bandwidthLimits":
        return BANDWIDTH_OPTIONS
    if parent and parent[-1] == "onUpload":
        return ON_UPLOAD_OPTIONS
    if len(parent) >= 2 and parent[-2] == "exec":
        return EXEC_OPTIONS
    return SYNC_OPTIONS


def unknown_option(key: str, parent: Sequence[str | int]) -> str:
    """Message for an unknown key inside a dev.sync entry, its bandwidthLimits or onUpload."""
    choices = _choices(parent)
    if choices in (ON_UPLOAD_OPTIONS, EXEC_OPTIONS) and key in _UNSUPPORTED_ON_UPLOAD:
        return f'unknown option "{key}"; {_UNSUPPORTED_ON_UPLOAD[key]}'
    guess = did_you_mean(key, choices)
    if guess:
        return f'unknown option "{key}"; did you mean "{guess}"?'
    return f'unknown option "{key}"; valid options are: {", ".join(choices)}'


def _is_exec(loc: Sequence[str | int]) -> bool:
    return len(loc) >= 2 and loc[-1] == "exec" and loc[-2] == "onUpload"


def _is_bandwidth(loc: Sequence[str | int]) -> bool:
    return len(loc) >= 2 and loc[-2] == "bandwidthLimits"


def explain(err: dict[str, Any]) -> tuple[str, str]:
    """Return (``want``, message) for one pydantic error; ``want`` is "key" or "value", which
    node the error points at."""
    kind: str = err["type"]
    loc: Sequence[str | int] = err["loc"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return "key", unknown_option(str(loc[-1]), loc[:-1])
    if _is_bandwidth(loc) and kind in ("int_type", "greater_than", "int_from_float"):
        return "value", (
            f"must be a positive whole number of KB/s (1 KB = 1024 bytes), got {describe(value)}"
            f"; e.g. {loc[-1]}: 100, or remove it for no limit"
        )
    if kind == "missing":
        return "key", f'required option "{loc[-1]}" is missing; add it'
    if loc and loc[-1] == "[key]":
        return "key", f"keys must be strings, got {describe(value)}; {_KEY_HINT}"
    simple = {
        "string_type": "expected a string",
        "bool_type": "expected true or false",
        "int_type": "expected a whole number",
        "list_type": 'expected a list (one "- item" per line)',
        "dict_type": "expected a mapping (key: value lines)",
        "model_type": "expected a mapping (key: value lines)",
        "model_attributes_type": "expected a mapping (key: value lines)",
    }
    if kind in simple:
        hint = ""
        if kind == "string_type" and not isinstance(value, list | dict | None):
            hint = f"; {_KEY_HINT}"
        elif _is_exec(loc) and kind == "list_type" and isinstance(value, str):
            hint = f"; write each command as an item: - command: {value}"
        elif kind == "list_type" and isinstance(value, str):
            hint = f'; write it as a list: ["{value}"]'
        elif kind == "model_type" and isinstance(value, str) and _is_exec(loc[:-1]):
            hint = f"; write it as: - command: {value}"
        return "value", f"{simple[kind]}, got {describe(value)}{hint}"
    return "value", f"{err.get('msg', 'invalid value')}, got {describe(value)}"

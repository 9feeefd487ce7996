"""Label and field selectors as the Kubernetes API parses them (the subset tests need).

Owns: parsing ``labelSelector`` (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a``, ``!a``) and ``fieldSelector`` (``metadata.name``, ``metadata.namespace``,
``status.phase``, ``spec.nodeName`` with ``=``, ``==``, ``!=``). May import: stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, str]], bool]

_SET_RE = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


class SelectorError(ValueError):
    """The selector string is malformed (the API answers 400)."""


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t.strip() for t in terms if t.strip()]


def _term(term: str) -> Predicate:
    m = _SET_RE.match(term)
    if m:
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = term.partition(op)
            key, value = key.strip(), value.strip()
            if not key:
                raise SelectorError(f"invalid label selector term {term!r}")
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = term[1:].strip()
        return lambda labels: key not in labels
    if re.fullmatch(r"[A-Za-z0-9./_-]+", term):
        return lambda labels: term in labels
    raise SelectorError(f"invalid label selector term {term!r}")


def parse_label_selector(text: str | None) -> Predicate:
    """A predicate over a label map; an empty selector matches everything."""
    preds = [_term(t) for t in _split_terms(text or "")]
    return lambda labels: all(p(labels) for p in preds)


_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda o: str(o["metadata"].get("name", "")),
    "metadata.namespace": lambda o: str(o["metadata"].get("namespace", "")),
    "status.phase": lambda o: str(o.get("status", {}).get("phase", "")),
    "spec.nodeName": lambda o: str(o.get("spec", {}).get("nodeName", "")),
}


def _field_check(
    getter: Callable[[dict[str, Any]], str], value: str, negate: bool
) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (getter(obj) != value) if negate else (getter(obj) == value)


def parse_field_selector(text: str | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over a whole object for the supported fields."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for term in _split_terms(text or ""):
        negate = "!=" in term
        key, _, value = term.partition("!=" if negate else ("==" if "==" in term else "="))
        getter = _FIELDS.get(key.strip())
        if getter is None or not _:
            raise SelectorError(f'field label not supported: "{key.strip()}"')
        checks.append(_field_check(getter, value.strip(), negate))
    return lambda obj: all(c(obj) for c in checks)

"""What a constraint needs the vocabulary to write, read from a regex or a JSON schema.

A requirement is a small tree: ``("chars", S)`` (one character of the set S), ``("all", [...])``
(every child), ``("any", [...])`` (at least one child), or ``None`` (nothing known). Only what
every valid output must contain is recorded (a literal, one of a character class, a required
property's name, an object's braces ...), and whatever is not understood needs nothing, so a
failed requirement is a sound refusal: no output the vocabulary can write is valid.
``Constraint.check_vocabulary`` (genzoo.sampling.constrained) uses it beside a matcher walk.
"""

from __future__ import annotations

import json
import re
from typing import Callable

DIGITS = frozenset("0123456789")


def chars(cs) -> tuple:
    return ("chars", frozenset(cs))


def text(s: str):
    return all_of([chars(c) for c in s])


def all_of(needs):
    needs = [n for n in needs if n is not None]
    return ("all", needs) if needs else None


def any_of(needs):
    needs = list(needs)
    return None if not needs or any(n is None for n in needs) else ("any", needs)


def missing(need, can: Callable[[str], bool]) -> frozenset | None:
    """The characters of the first requirement the vocabulary cannot meet (``can(c)``: it can write c), or None."""
    if need is None:
        return None
    kind, body = need
    if kind == "chars":
        return None if any(can(c) for c in body) else body
    if kind == "all":
        for n in body:
            if (gap := missing(n, can)) is not None:
                return gap
        return None
    gaps = [missing(n, can) for n in body]  # "any": unmet only when every alternative is
    return None if any(g is None for g in gaps) else frozenset().union(*gaps)


def describe(cs: frozenset) -> str:
    """'{', or one of '-', '0'-'9' (runs of 3+ consecutive characters as ranges; at most 12 items shown)."""
    shown = sorted(cs)
    if len(shown) == 1:
        return repr(shown[0])
    items, i = [], 0
    while i < len(shown):
        j = i
        while j + 1 < len(shown) and ord(shown[j + 1]) == ord(shown[j]) + 1:
            j += 1
        items += [f"{shown[i]!r}-{shown[j]!r}"] if j - i >= 2 else list(map(repr, shown[i:j + 1]))
        i = j + 1
    more = f" ... ({len(shown)} characters)" if len(items) > 12 else ""
    return "one of " + ", ".join(items[:12]) + more


# ---- regular expressions (Python's parser; llguidance's syntax agrees on what is checked here)
def regex_needs(pattern: str):
    try:
        from re import _parser as sre  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse as sre
    try:
        parsed = sre.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None  # llguidance's dialect: nothing known, llguidance itself validates it
    fold = bool(parsed.state.flags & re.IGNORECASE)
    return _sequence(parsed, sre, fold)


def _sequence(items, sre, fold):
    return all_of([_item(op, av, sre, fold) for op, av in items])


def _item(op, av, sre, fold):
    c = sre.constants if hasattr(sre, "constants") else sre
    if op == c.LITERAL:
        ch = chr(av)
        return chars({ch, ch.swapcase()} if fold else {ch})
    if op == c.IN:
        return _char_class(av, c, fold)
    if op == c.SUBPATTERN:
        return _sequence(av[-1], sre, fold)
    if op == c.BRANCH:
        return any_of([_sequence(p, sre, fold) for p in av[1]])
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
        return _sequence(av[2], sre, fold) if av[0] >= 1 else None
    if op == getattr(c, "ATOMIC_GROUP", None):
        return _sequence(av, sre, fold)
    return None  # ., anchors, lookarounds, backreferences: nothing known


def _char_class(items, c, fold):
    out: set[str] = set()
    for op, av in items:
        if op == c.LITERAL:
            out.add(chr(av))
        elif op == c.RANGE and av[1] - av[0] < 4096:
            out.update(chr(i) for i in range(av[0], av[1] + 1))
        elif op == c.CATEGORY and av == c.CATEGORY_DIGIT:
            out.update(DIGITS)
        else:  # a negation, \w, \s, a huge range: too wide to matter
            return None
    return chars(out | {x.swapcase() for x in out} if fold else out)


# ---- JSON schemas (compact JSON, as genzoo's constraints generate it) ---------------------------
def schema_needs(schema, depth: int = 0):
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "const" in schema:
        return _value_needs(schema["const"])
    if isinstance(schema.get("enum"), list):
        return any_of([_value_needs(v) for v in schema["enum"]])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return any_of([schema_needs(s, depth + 1) for s in schema[key]])
    needs = [schema_needs(s, depth + 1) for s in schema.get("allOf") or [] if isinstance(s, dict)]
    types = schema.get("type")
    types = types if isinstance(types, list) else [types] if isinstance(types, str) else []
    if types:
        needs.append(any_of([_type_needs(t, schema, depth) for t in types]))
    return all_of(needs)


def _type_needs(kind: str, schema: dict, depth: int):
    if kind == "object":
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        props = schema.get("properties") or {}
        members = [all_of([text(json.dumps(name, ensure_ascii=False)), chars(":"),
                           schema_needs(props.get(name), depth + 1)]) for name in required]
        return all_of([chars("{"), chars("}"), chars(",") if len(required) > 1 else None, *members])
    if kind == "array":
        items = schema.get("items") if (schema.get("minItems") or 0) >= 1 else None
        return all_of([chars("["), chars("]"), schema_needs(items, depth + 1)])
    if kind == "string":
        return chars('"')
    if kind in ("integer", "number"):
        return chars(DIGITS)
    if kind == "boolean":
        return any_of([text("true"), text("false")])
    if kind == "null":
        return text("null")
    return None


def _value_needs(value):
    try:
        return text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError):
        return None

"""Required structure: length limits, a JSON schema, Python that parses.

JSON schemas are validated with ``jsonschema`` where it is installed; otherwise with the small
checker below, which covers the subset constrained decoding uses (type, properties, required,
additionalProperties, items, minItems/maxItems, enum, const, minLength/maxLength, minimum/maximum,
pattern) and refuses any other keyword rather than pass it unchecked.
"""

from __future__ import annotations

import json
import re

from genzoo.core.errors import GenzooError

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
_KNOWN = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const",
          "minLength", "maxLength", "minimum", "maximum", "pattern", "title", "description", "$schema", "default"}


def length_problem(text: str, min_chars: int | None, max_chars: int | None) -> str | None:
    n = len(text.strip())
    if min_chars is not None and n < min_chars:
        return f"{n} chars < min {min_chars}"
    if max_chars is not None and n > max_chars:
        return f"{n} chars > max {max_chars}"
    return None


def check_schema_keywords(schema) -> None:
    """Refuse, when the policy loads, a schema the fallback checker could not honour (no jsonschema here)."""
    if _jsonschema() is not None:
        return
    if not isinstance(schema, dict):
        raise GenzooError("guardrails: [structure] json_schema must be a JSON object")
    unknown = set(schema) - _KNOWN
    if unknown:
        raise GenzooError(f"guardrails: the JSON schema uses {sorted(unknown)}, which only the jsonschema package checks: pip install jsonschema")
    for sub in [*schema.get("properties", {}).values(), *([schema["items"]] if isinstance(schema.get("items"), dict) else [])]:
        check_schema_keywords(sub)


def schema_problem(text: str, schema: dict) -> str | None:
    """None when ``text`` is JSON valid under ``schema``, else why not (one line)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return f"not JSON: {e.msg} (char {e.pos})"
    js = _jsonschema()
    if js is not None:
        error = js.exceptions.best_match(js.Draft202012Validator(schema).iter_errors(value))
        return None if error is None else f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
    return _problem(value, schema, "(root)")


def python_problem(text: str) -> str | None:
    from genzoo.sampling.verify import python_parses

    result = python_parses(text)
    return None if result is True else str(result)


def _jsonschema():
    try:
        import jsonschema
    except ImportError:
        return None
    return jsonschema


def _is(value, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind]) if kind in _TYPES else False


def _problem(v, s: dict, at: str) -> str | None:
    kinds = s.get("type")
    if kinds is not None and not any(_is(v, k) for k in ([kinds] if isinstance(kinds, str) else kinds)):
        return f"{at}: expected {kinds}, got {type(v).__name__}"
    if "const" in s and v != s["const"]:
        return f"{at}: must be {s['const']!r}"
    if "enum" in s and v not in s["enum"]:
        return f"{at}: must be one of {s['enum']}"
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", len(v)):
            return f"{at}: length {len(v)} outside the schema's limits"
        if "pattern" in s and not re.search(s["pattern"], v):
            return f"{at}: does not match {s['pattern']!r}"
    if _is(v, "number") and (v < s.get("minimum", v) or v > s.get("maximum", v)):
        return f"{at}: {v} outside [{s.get('minimum', '-inf')}, {s.get('maximum', 'inf')}]"
    if isinstance(v, dict):
        for name in s.get("required", []):
            if name not in v:
                return f"{at}: missing required {name!r}"
        props = s.get("properties", {})
        for name, item in v.items():
            if name in props:
                problem = _problem(item, props[name], f"{at}/{name}")
                if problem:
                    return problem
            elif s.get("additionalProperties") is False:
                return f"{at}: unexpected property {name!r}"
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", len(v)):
            return f"{at}: {len(v)} items outside the schema's limits"
        if isinstance(s.get("items"), dict):
            for i, item in enumerate(v):
                problem = _problem(item, s["items"], f"{at}/{i}")
                if problem:
                    return problem
    return None

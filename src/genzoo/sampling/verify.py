"""Verifier in the loop: propose, check symbolically, try again within a budget.

A *check* takes the candidate text and returns ``True`` when it passes, or
``False`` / a string saying why it fails. ``generate_verified`` asks
``make_candidate(attempt)`` (attempt = 0, 1, ...; a sampler typically seeds
on it) for candidates until one passes or ``max_attempts`` are used.

Built-in checks: ``python_parses`` (``ast.parse``), ``arithmetic_equals(target)``
(an arithmetic expression evaluated on its syntax tree: numbers, + - * / **,
parentheses and unary signs only; names, calls, attributes and everything
else are refused, never evaluated) and ``predicate(fn)`` for a user rule.
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction
from typing import Callable, NamedTuple

from genzoo.core.errors import GenzooError

Check = Callable[[str], "bool | str"]


class Verified(NamedTuple):
    text: str
    attempts: int
    ok: bool


def _passed(result) -> bool:
    if result is True:
        return True
    if result is False or isinstance(result, str):
        return False
    raise GenzooError(f"a check must return True, False or a failure message (str), got {result!r}")


def generate_verified(
    make_candidate: Callable[[int], str],
    check: Check,
    max_attempts: int,
    *,
    on_attempt: Callable[[int, str, "bool | str"], None] | None = None,
) -> Verified:
    """``(text, attempts_used, ok)``: the first candidate that passes ``check``, or the last one tried.

    ``on_attempt(attempt, text, result)`` sees every try (for logs, or to
    collect the failure messages).
    """
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        raise GenzooError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    text = ""
    for attempt in range(max_attempts):
        text = make_candidate(attempt)
        if not isinstance(text, str):
            raise GenzooError(f"make_candidate must return a string, got {type(text).__name__}")
        result = check(text)
        if on_attempt is not None:
            on_attempt(attempt, text, result)
        if _passed(result):
            return Verified(text, attempt + 1, True)
    return Verified(text, max_attempts, False)


# ----------------------------------------------------------------------------- checks


def python_parses(text: str) -> bool | str:
    """True when ``text`` is syntactically valid Python (``ast.parse``; nothing is run)."""
    try:
        ast.parse(text)
    except SyntaxError as e:
        return f"{type(e).__name__}: {e.msg} (line {e.lineno})"
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return f"{type(e).__name__}: {e}"
    return True


class ExpressionError(GenzooError):
    """An expression outside the allowed arithmetic, or one that cannot be computed."""


_MAX_TEXT = 10_000
_MAX_EXPONENT = 10_000
_MAX_BITS = 100_000
_BINOPS = {ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow}
_UNARY = {ast.USub, ast.UAdd}


def _number(node: ast.Constant, source: str):
    v = node.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExpressionError(f"only numbers are allowed, not {v!r}")
    if isinstance(v, int):
        return Fraction(v)
    if not math.isfinite(v):
        raise ExpressionError(f"the number {ast.get_source_segment(source, node)} is out of range")
    try:  # the decimal as written: "0.1" is exactly 1/10, not the nearest binary float
        return Fraction((ast.get_source_segment(source, node) or "").replace("_", ""))
    except (ValueError, ZeroDivisionError):
        return Fraction(v)


def _eval(node: ast.AST, source: str):
    if isinstance(node, ast.Expression):
        return _eval(node.body, source)
    if isinstance(node, ast.Constant):
        return _number(node, source)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        v = _eval(node.operand, source)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _eval(node.left, source), _eval(node.right, source)
        op = type(node.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        if op is ast.Mult:
            return a * b
        if op is ast.Div:
            if b == 0:
                raise ExpressionError("division by zero")
            return a / b
        # power: exact for integer exponents within bounds, float otherwise
        if isinstance(b, Fraction) and b.denominator == 1:
            e = b.numerator
            if abs(e) > _MAX_EXPONENT:
                raise ExpressionError(f"exponent {e} is too large (limit {_MAX_EXPONENT})")
            if isinstance(a, Fraction):
                if a == 0 and e < 0:
                    raise ExpressionError("division by zero (0 to a negative power)")
                size = max(a.numerator.bit_length(), a.denominator.bit_length()) * abs(e)
                if size > _MAX_BITS:
                    raise ExpressionError("the power is too large to compute")
            return a**e
        try:
            r = float(a) ** float(b)
        except (OverflowError, ZeroDivisionError) as err:
            raise ExpressionError(f"cannot compute the power: {err}") from err
        if isinstance(r, complex):
            raise ExpressionError("the power has no real value")
        return r
    what = type(node).__name__
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        what = type(node.op).__name__
    raise ExpressionError(f"{what} is not allowed: only numbers, + - * / **, parentheses and unary signs")


def evaluate_arithmetic(text: str) -> Fraction | float:
    """The value of an arithmetic expression, computed on its syntax tree (never ``eval``).

    Integers and finite decimals are computed exactly (as fractions); a
    non-integer power gives a float. Raises ``GenzooError`` for anything else.
    """
    text = text.strip()
    if len(text) > _MAX_TEXT:
        raise ExpressionError(f"the expression is longer than {_MAX_TEXT} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"not an expression: {e.msg}") from e
    except (ValueError, RecursionError, MemoryError) as e:
        raise ExpressionError(f"not an expression: {type(e).__name__}") from e
    try:
        value = _eval(tree, text)
    except RecursionError as e:
        raise ExpressionError("the expression is nested too deeply") from e
    except OverflowError as e:
        raise ExpressionError(f"the value overflows: {e}") from e
    return value


def arithmetic_equals(target, *, rel_tol: float = 1e-9) -> Check:
    """A check: the text is an arithmetic expression whose value equals ``target``.

    Exact comparison when both sides are exact (ints, fractions, finite
    decimals); otherwise ``math.isclose`` with ``rel_tol``.
    """
    if isinstance(target, bool) or not isinstance(target, (int, float, Fraction)):
        raise GenzooError(f"target must be a number, got {target!r}")

    def check(text: str) -> bool | str:
        try:
            value = evaluate_arithmetic(text)
        except GenzooError as e:
            return str(e)
        if isinstance(value, Fraction) and isinstance(target, (int, Fraction)):
            ok = value == target
        else:
            ok = math.isclose(float(value), float(target), rel_tol=rel_tol, abs_tol=1e-12)
        return True if ok else f"the expression equals {value} (as float {float(value):g}), not {target}"

    check.__name__ = f"arithmetic_equals({target})"
    return check


def predicate(fn: Callable[[str], bool], message: str = "the predicate failed") -> Check:
    """A check from a user's ``fn(text) -> bool`` (an exception counts as a failure, with its message)."""

    def check(text: str) -> bool | str:
        try:
            return True if fn(text) else message
        except Exception as e:  # a user rule that crashes rejects the candidate, it does not end the loop
            return f"{message}: {type(e).__name__}: {e}"

    check.__name__ = getattr(fn, "__name__", "predicate")
    return check


def all_of(*checks: Check) -> Check:
    """A check that passes when every one of ``checks`` passes (the first failure's message is returned)."""

    def check(text: str) -> bool | str:
        for c in checks:
            r = c(text)
            if not _passed(r):
                return r if isinstance(r, str) else f"{getattr(c, '__name__', 'check')} failed"
        return True

    return check

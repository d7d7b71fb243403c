"""Constrained decoding: a regex, a JSON schema or a Lark grammar, valid by construction.

The constraint is enforced by ``llguidance`` (guidance-ai): before each token
its matcher computes the set of tokens that keep the text a prefix of some
valid output (a bitmask over the vocabulary); every other token gets
``-inf``. The chosen token is then consumed, advancing the matcher. The end
of sequence token is allowed exactly when the text so far is complete, and
when the matcher is *stopped* (complete and nothing may follow) eos is the
only token left, so generation ends there.

    c = Constraint(tokenizer, regex=r"[0-9]{3}-[a-z]+")
    out = generate(step, prompts, eos_id=tokenizer.eos_id, max_new_tokens=32,
                   logits_processor=c.as_logits_processor())

The tokenizer is any object with ``token_bytes() -> list[bytes]`` (the bytes
each id stands for), ``eos_id`` and ``encode(str) -> list[int]``; optional
``special_ids`` (ids that are control tokens, not text: they are never
allowed, except eos). The model's logits may be wider than the tokenizer's
vocabulary (padded embedding tables): the extra ids are always masked.

Checked up front: a constraint the vocabulary cannot write (a JSON schema on a char model that
never saw ``{``) is refused when it is made, naming the character (``check_vocabulary``), rather
than after tokens have streamed. Special tokens (``<unk>``, padding, bos) never pass a mask: they
stand for no text of their own.

The constraint covers the generated text only, not the prompt.
A row that hits ``max_new_tokens`` before the matcher accepts is cut short
and is not valid; ``ConstrainedProcessor.is_accepting(row)`` tells.
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

import numpy as np
import torch

from genzoo.core.errors import GenzooError
from genzoo.sampling import constraint_needs as needs

try:  # the extra that constrained decoding needs
    import llguidance as _llg
except ImportError:  # pragma: no cover - exercised only without the extra
    _llg = None


def _need_llguidance():
    if _llg is None:
        raise GenzooError("constrained decoding needs the llguidance package: pip install 'llguidance>=1.0'")
    return _llg


def _first_part(message: str) -> str:
    """llguidance's errors append a state dump (``<state>...``); keep the human part."""
    return message.split("<state>")[0].strip()


# ----------------------------------------------------------------------------- tokenizer


class _Adapter:
    """What llguidance's ``TokenizerWrapper`` reads: ``tokens``, ``eos_token_id``, ``bos_token_id``, a call."""

    def __init__(self, tokenizer, tokens: list[bytes], special: list[int]):
        self._tok = tokenizer
        self.tokens = tokens
        self.eos_token_id = int(tokenizer.eos_id)
        self.bos_token_id = getattr(tokenizer, "bos_id", None)
        self.special_token_ids = special

    def __call__(self, s):  # llguidance hands bytes when the call accepts them; we decode to str first
        if isinstance(s, (bytes, bytearray)):
            s = bytes(s).decode("utf-8", errors="replace")
        # A character outside the vocabulary encodes as <unk>; llguidance then offers <unk> for it, which
        # Matcher.allowed takes out (dropping it here would offer the next character's token instead).
        return list(self._tok.encode(s))


_LLTOK_CACHE: dict[int, tuple[Any, Any]] = {}


def ll_tokenizer(tokenizer, *, special_ids: Sequence[int] | None = None):
    """The ``llguidance.LLTokenizer`` for a genzoo-style tokenizer (cached per tokenizer object).

    Building one walks the whole vocabulary (about a second for 150k tokens),
    so it is made once per tokenizer and shared by every ``Constraint``.
    """
    llg = _need_llguidance()
    key = id(tokenizer)
    hit = _LLTOK_CACHE.get(key)
    if hit is not None and hit[0] is tokenizer and special_ids is None:
        return hit[1]
    tokens = [bytes(b) for b in tokenizer.token_bytes()]
    eos = int(tokenizer.eos_id)
    if not 0 <= eos < len(tokens):
        raise GenzooError(f"the tokenizer's eos_id {eos} lies outside its {len(tokens)} tokens")
    special = set(getattr(tokenizer, "special_ids", None) or ()) if special_ids is None else set(special_ids)
    special.add(eos)
    wrapper = _llg.TokenizerWrapper(_Adapter(tokenizer, tokens, sorted(int(i) for i in special)))
    try:
        lltok = llg.LLTokenizer(wrapper)
    except Exception as e:  # llguidance rejects e.g. duplicate or malformed vocabularies
        raise GenzooError(f"llguidance could not use this tokenizer: {e}") from e
    if special_ids is None:
        if len(_LLTOK_CACHE) >= 8:
            _LLTOK_CACHE.pop(next(iter(_LLTOK_CACHE)))
        _LLTOK_CACHE[key] = (tokenizer, lltok)
    return lltok


# ----------------------------------------------------------------------------- constraint


class Constraint:
    """A compiled constraint: exactly one of ``regex``, ``json_schema`` or ``grammar`` (Lark syntax).

    ``json_schema`` is a dict or a JSON string. JSON is generated compact by
    default (``whitespace_flexible=False``): no free whitespace, so a model
    cannot wander off into spaces; set it True to allow any JSON whitespace.
    ``grammar`` is llguidance's Lark dialect (``start: expr``, rules,
    ``/regex/`` terminals, ``%json {schema}`` to embed a schema).
    Raises ``GenzooError`` with llguidance's message for an invalid one.
    """

    def __init__(
        self,
        tokenizer,
        *,
        regex: str | None = None,
        json_schema: dict | str | None = None,
        grammar: str | None = None,
        whitespace_flexible: bool = False,
        special_ids: Sequence[int] | None = None,
        check: bool = True,
    ):
        llg = _need_llguidance()
        given = [k for k, v in (("regex", regex), ("json_schema", json_schema), ("grammar", grammar)) if v is not None]
        if len(given) != 1:
            raise GenzooError(f"give exactly one of regex=, json_schema=, grammar= (got {', '.join(given) or 'none'})")
        self.kind = given[0]
        self.tokenizer = tokenizer
        self.eos_id = int(tokenizer.eos_id)
        self.lltok = ll_tokenizer(tokenizer, special_ids=special_ids)
        self.vocab_size = self.lltok.vocab_size
        special = set(getattr(tokenizer, "special_ids", None) or ()) if special_ids is None else set(special_ids)
        self.special_ids = sorted(int(i) for i in special - {self.eos_id} if 0 <= int(i) < self.vocab_size)
        self._need = None
        t0 = time.perf_counter()
        if regex is not None:
            if not isinstance(regex, str):
                raise GenzooError(f"regex must be a string, got {type(regex).__name__}")
            self.source = regex
            spec = llg.LLMatcher.grammar_from_regex(regex)
            self._need = needs.regex_needs(regex)
        elif json_schema is not None:
            if isinstance(json_schema, str):
                try:
                    json_schema = json.loads(json_schema)
                except json.JSONDecodeError as e:
                    raise GenzooError(f"invalid JSON schema: not JSON ({e})") from e
            if not isinstance(json_schema, dict):
                raise GenzooError(f"invalid JSON schema: expected an object, got {type(json_schema).__name__}")
            self.source = json.dumps(json_schema)
            self._need = needs.schema_needs(json_schema)
            try:
                spec = llg.LLMatcher.grammar_from_json_schema(
                    json_schema, overrides={"whitespace_flexible": bool(whitespace_flexible)}
                )
            except (ValueError, TypeError) as e:
                raise GenzooError(f"invalid JSON schema: {e}") from e
        else:
            if not isinstance(grammar, str):
                raise GenzooError(f"grammar must be a string in Lark syntax, got {type(grammar).__name__}")
            self.source = grammar
            spec = llg.LLMatcher.grammar_from_lark(grammar)
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(spec, self.lltok)
        if is_error:
            raise GenzooError(f"invalid {self.kind.replace('_', ' ')}: {_first_part(messages[0])}")
        self.warnings = list(messages)
        self._spec = spec
        self._base = llg.LLMatcher(self.lltok, spec, log_level=0)
        if self._base.is_error():
            raise GenzooError(f"invalid {self.kind.replace('_', ' ')}: {_first_part(self._base.get_error())}")
        if check:
            self.check_vocabulary()
        self.compile_seconds = time.perf_counter() - t0

    def __repr__(self) -> str:
        src = self.source if len(self.source) <= 60 else self.source[:57] + "..."
        return f"Constraint({self.kind}={src!r})"

    # ---- can the vocabulary write it? -------------------------------------------------------
    def check_vocabulary(self, steps: int = 256) -> None:
        """Refuse (``GenzooError``, before any token) a constraint that no text this vocabulary can
        write satisfies. Two sound checks: walk the matcher while the vocabulary leaves exactly one
        token (forced bytes such as a schema's ``{"name":"``) and refuse a dead end; then the
        characters every valid output holds (``constraint_needs``), which reach past choices."""
        m = self.matcher()
        for _ in range(steps):
            if m.is_accepting():
                break
            allowed = m.allowed().nonzero().flatten().tolist()
            if not allowed:
                raise self.cannot_write(m.written())
            if len(allowed) > 1:
                break
            m.consume(allowed)
        gap = needs.missing(self._need, self._can_write())
        if gap is not None:
            raise self._refusal(gap)

    def cannot_write(self, written: bytes) -> GenzooError:
        """The error for a dead end after ``written``: what the constraint wants next, by a byte-level matcher."""
        wanted = _next_chars(self._spec, written)
        if not wanted:
            return GenzooError(f"the {self._what()} cannot be completed by {self._vocabulary()} "
                               f"after {written.decode('utf-8', 'replace')!r}; use a constraint it can write")
        return self._refusal(wanted, written)

    def _refusal(self, wanted: frozenset, written: bytes = b"") -> GenzooError:
        after = f" after {written.decode('utf-8', 'replace')!r}" if written else ""
        return GenzooError(f"the {self._what()} needs {needs.describe(wanted)}{after}, which {self._vocabulary()} "
                           "cannot write; use a constraint it can write, or a model whose tokenizer has it "
                           "(a byte-level bpe tokenizer writes any character)")

    def _what(self) -> str:
        return {"regex": "regex", "json_schema": "JSON schema", "grammar": "grammar"}[self.kind]

    def _vocabulary(self) -> str:
        kind = getattr(self.tokenizer, "kind", None)
        return f"this model's vocabulary ({kind + ', ' if kind else ''}{self.vocab_size} tokens)"

    def _can_write(self):
        """``can(c)``: some ordinary token (no special one) holds the character c."""
        if getattr(self, "_writable", None) is None:
            special = set(self.special_ids) | {self.eos_id}
            tokens = [bytes(b) for i, b in enumerate(self.tokenizer.token_bytes()) if i not in special]
            if {b for b in tokens if len(b) == 1} >= {bytes([i]) for i in range(256)}:
                self._writable = None, True  # byte level: every character
            else:
                self._writable = frozenset("".join(b.decode("utf-8", "ignore") for b in tokens)), False
        written, every = self._writable
        return (lambda c: True) if every else written.__contains__

    def matcher(self) -> "Matcher":
        """A fresh matcher at the start of the text (cheap: a copy of the compiled one)."""
        return Matcher(self, self._base.deep_copy())

    def as_logits_processor(self) -> "ConstrainedProcessor":
        """A ``logits_processor`` for ``genzoo.sampling.text.generate``: one matcher per row, made on first use.

        Make a new one for every ``generate`` call (it remembers the rows' state).
        """
        return ConstrainedProcessor(self)

    def validate(self, text: str) -> bool:
        """Whether the whole of ``text`` is a complete match (checked on its tokens; for tests and reports)."""
        m = self.matcher()
        return m.consume(self.tokenizer.encode(text), strict=False) and m.is_accepting()


class Matcher:
    """The state of one row: which tokens may come next, and consuming the chosen one."""

    def __init__(self, constraint: Constraint, ll_matcher):
        self.constraint = constraint
        self._m = ll_matcher
        self.consumed = 0
        self._ids: list[int] = []

    def written(self) -> bytes:
        """The bytes of the tokens consumed so far."""
        return self.constraint.lltok.decode_bytes(self._ids)

    def allowed(self, width: int | None = None) -> torch.Tensor:
        """Boolean (width,) mask of the allowed next tokens (width defaults to the tokenizer's vocabulary).

        Ids at or beyond the tokenizer's vocabulary are never allowed.
        """
        v = self.constraint.vocab_size
        width = v if width is None else width
        if width < v:
            raise GenzooError(
                f"the model's logits have {width} entries but the tokenizer has {v} tokens: "
                "a constraint needs the model to cover the tokenizer's vocabulary"
            )
        bits = np.unpackbits(np.frombuffer(self._m.compute_bitmask(), dtype=np.uint8), bitorder="little")
        if self._m.is_error():
            if _first_part(self._m.get_error()).startswith("NoExtension"):  # no token of the vocabulary continues the text
                raise self.constraint.cannot_write(self.written())
            raise GenzooError(f"constrained decoding failed: {_first_part(self._m.get_error())}")
        mask = np.zeros(width, dtype=bool)
        mask[:v] = bits[:v]
        mask[self.constraint.special_ids] = False  # <unk>, padding, bos: no text of their own
        return torch.from_numpy(mask)

    def consume(self, ids: Sequence[int], *, strict: bool = True) -> bool:
        """Advance past ``ids``; with ``strict`` a token the constraint forbids raises ``GenzooError``."""
        for t in ids:
            if not self._m.consume_token(int(t)):
                if strict:
                    raise GenzooError(
                        f"token {int(t)} breaks the constraint: {_first_part(self._m.get_error())}"
                    )
                return False
            self.consumed += 1
            self._ids.append(int(t))
        return True

    def is_accepting(self) -> bool:
        """The text so far is a complete match (eos would be allowed)."""
        return self._m.is_accepting()

    def is_stopped(self) -> bool:
        """Complete, and nothing but eos may follow."""
        return self._m.is_stopped()


class ConstrainedProcessor:
    """``logits_processor(row, generated_ids, logits_row)``: masks forbidden tokens to ``-inf``.

    It consumes the tokens generated since its last call before computing
    the next mask, so it needs no other hook into the loop. When the matcher
    is stopped only eos is left, which ends the row (pass ``eos_id`` to
    ``generate``).
    """

    def __init__(self, constraint: Constraint):
        self.constraint = constraint
        self.matchers: dict[int, Matcher] = {}
        self.mask_seconds = 0.0
        self.masks = 0

    def __call__(self, row: int, generated_ids: Sequence[int], logits_row: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        m = self.matchers.get(row)
        if m is None:
            m = self.matchers[row] = self.constraint.matcher()
        if m.is_stopped() and len(generated_ids) > m.consumed:
            raise GenzooError(
                "the constraint is complete but generation went on: pass eos_id=tokenizer.eos_id to generate"
            )
        m.consume(generated_ids[m.consumed:])
        mask = m.allowed(logits_row.shape[-1])
        if not mask.any():  # a dead end the up-front check could not see (past a choice): say what is missing
            raise self.constraint.cannot_write(m.written())
        mask = mask.to(logits_row.device)
        out = logits_row.masked_fill(~mask, float("-inf"))
        self.mask_seconds += time.perf_counter() - t0
        self.masks += 1
        return out

    def is_accepting(self, row: int) -> bool:
        """Whether row's output is complete (False when it was cut by the token limit mid-match)."""
        m = self.matchers.get(row)
        return m is not None and m.is_accepting()


_BYTES: list = []


def byte_tokenizer():
    """An LLTokenizer of the 256 single bytes (+ eos): what a constraint wants next, whatever a model's vocabulary."""
    if not _BYTES:
        class Bytes:
            eos_id, special_ids = 256, [256]

            def token_bytes(self):
                return [bytes([i]) for i in range(256)] + [b"\xff<eos>"]

            def encode(self, s):
                return list(s.encode("utf-8"))

        _BYTES.append(ll_tokenizer(Bytes(), special_ids=[256]))
    return _BYTES[0]


def _next_chars(spec, written: bytes) -> frozenset:
    """The characters a constraint allows after ``written`` (its forced next character when there is one)."""
    m = _llg.LLMatcher(byte_tokenizer(), spec, log_level=0)
    if written and not m.consume_tokens(list(written)):
        return frozenset()
    forced = m.compute_ff_bytes().decode("utf-8", "ignore")
    if forced:
        return frozenset(forced[0])
    bits = np.unpackbits(np.frombuffer(m.compute_bitmask(), dtype=np.uint8), bitorder="little")[:128]
    return frozenset(chr(i) for i in np.flatnonzero(bits))  # ASCII: enough to name what is missing


def constraint_cost(step, prompts, constraint: Constraint, *, max_new_tokens: int = 64, repeats: int = 3,
                    seed: int = 0, **generate_options) -> dict:
    """Per-token time of ``generate`` with and without the constraint, and their ratio (best of ``repeats``).

    The two runs generate different numbers of tokens (the constraint ends
    rows early), so time is divided by the tokens each produced.
    """
    from genzoo.sampling.text import generate

    def per_token(processor_factory):
        best = float("inf")
        for _ in range(repeats):
            proc = processor_factory()
            g = torch.Generator().manual_seed(seed)
            t0 = time.perf_counter()
            out = generate(step, prompts, max_new_tokens=max_new_tokens, eos_id=constraint.eos_id, generator=g,
                           logits_processor=proc, **generate_options)
            dt = time.perf_counter() - t0
            n = sum(len(o.ids) + (o.stop_reason == "eos") for o in out)
            best = min(best, dt / max(n, 1))
        return best

    free = per_token(lambda: None)
    held = per_token(constraint.as_logits_processor)
    return {"seconds_per_token": free, "constrained_seconds_per_token": held, "ratio": held / free}

"""Text metrics: bits per character / token, perplexity, compressor baselines, parse share, distinct-n.

Units. A model's summed negative log-likelihood over a held-out token stream
(in nats) becomes ``bits_per_char(nll, n_chars)`` with ``n_chars`` the
characters of the held-out documents (end-of-document tokens cost nats but
stand for no character), ``bits_per_token(nll, n_tokens)`` and
``perplexity(nll / n_tokens)``. Bits per character compare across tokenizers;
bits per token and perplexity do not.

Reference line. ``compressor_bits_per_char(train, heldout, "xz")`` is what a
general-purpose compressor that has read the training text pays per held-out
character: ``8 * (C(train + heldout) - C(train)) / len(heldout)``, ``C`` the
compressed size in bytes. A language model should beat it.
"""

from __future__ import annotations

import ast
import bz2
import lzma
import math
import warnings
import zlib
from collections.abc import Sequence

from genzoo.core.errors import GenzooError
from genzoo.core.units import LN2

COMPRESSORS = ("xz", "bz2", "zlib")
DEFAULT_CONTEXT_CHARS = 8_000_000


def bits_per_char(nll_nats_total: float, n_chars: int) -> float:
    """Summed NLL in nats over a text of ``n_chars`` characters, as bits per character."""
    if n_chars <= 0:
        raise GenzooError(f"bits per character needs a positive character count, got {n_chars}")
    return float(nll_nats_total) / (n_chars * LN2)


def bits_per_token(nll_nats_total: float, n_tokens: int) -> float:
    """Summed NLL in nats over ``n_tokens`` predicted tokens, as bits per token."""
    if n_tokens <= 0:
        raise GenzooError(f"bits per token needs a positive token count, got {n_tokens}")
    return float(nll_nats_total) / (n_tokens * LN2)


def perplexity(nats_per_token: float) -> float:
    """exp(mean NLL per token in nats); ``inf`` where it overflows."""
    try:
        return math.exp(float(nats_per_token))
    except OverflowError:
        return math.inf


def compressed_size(data: bytes, method: str = "xz") -> int:
    """Bytes after compression at the strongest standard setting (xz preset 9, bz2 level 9, zlib level 9)."""
    if method == "xz":
        return len(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9))
    if method == "bz2":
        return len(bz2.compress(data, compresslevel=9))
    if method == "zlib":
        return len(zlib.compress(data, 9))
    raise GenzooError(f"unknown compressor {method!r}; choose one of: {', '.join(COMPRESSORS)}")


def compressor_bits_per_char(train_text: str, heldout_text: str, method: str = "xz", *,
                             context_chars: int | None = DEFAULT_CONTEXT_CHARS) -> float:
    """Conditional bits per held-out character: ``8 * (C(train + heldout) - C(train)) / len(heldout)``.

    Texts are compressed as UTF-8, the held-out text appended right after the
    training text. ``len(heldout)`` counts characters, so the number compares
    with a model's ``bits_per_char``.

    Very large training texts: only the last ``context_chars`` characters of
    ``train_text`` serve as context (default 8 M; ``None`` uses all of it). Each
    call compresses the context twice, and xz at preset 9 runs at about 1-2 MB/s
    on one core, so the cap bounds the cost; it rarely changes the answer, since
    bz2 only sees the last 900 kB block anyway, zlib a 32 KiB window, and xz's
    64 MiB dictionary gains little from text far back.
    """
    if not heldout_text:
        raise GenzooError("the held-out text is empty")
    if context_chars is not None and len(train_text) > context_chars:
        train_text = train_text[len(train_text) - context_chars:] if context_chars > 0 else ""
    train = train_text.encode("utf-8")
    both = train + heldout_text.encode("utf-8")
    return 8.0 * (compressed_size(both, method) - compressed_size(train, method)) / len(heldout_text)


# --- code samples -------------------------------------------------------------------------------------------

def _parses(code: str) -> bool:
    """True if ``code`` parses and holds at least one statement."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not a failure
            tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return len(tree.body) > 0


def trim_to_parseable(sample: str) -> str | None:
    """The longest prefix of ``sample`` ending at a line boundary that parses, or None.

    Line boundaries are the ends of lines (just after each ``\\n``) and the end of the
    sample. A prefix with no statement (empty, or only blank lines and comments)
    counts as not parsing. For a sample cut off mid-statement this keeps
    everything up to the last complete statement.
    """
    lines = sample.splitlines(keepends=True)
    ends, pos = [], 0
    for line in lines:
        pos += len(line)
        ends.append(pos)
    for end in reversed(ends):
        prefix = sample[:end]
        if prefix.strip() and _parses(prefix):
            return prefix
    return None


def parse_stats(samples: Sequence[str]) -> dict[str, float]:
    """``parse_share``, ``strict_share`` (the whole sample parses as it is) and ``kept_fraction``
    (characters kept by trimming, over all characters)."""
    samples = list(samples)
    if not samples:
        raise GenzooError("parse share needs at least one sample")
    trimmed = [trim_to_parseable(s) for s in samples]
    total = sum(len(s) for s in samples)
    kept = sum(len(t) for t in trimmed if t is not None)
    return {
        "parse_share": sum(t is not None for t in trimmed) / len(samples),
        "strict_share": sum(bool(s.strip()) and _parses(s) for s in samples) / len(samples),
        "kept_fraction": kept / total if total else 0.0,
        "n": len(samples),
    }


def parse_share(samples: Sequence[str]) -> float:
    """Share of code samples that parse with ``ast.parse`` after trimming each to its last complete
    top-level statement (``trim_to_parseable``: the longest prefix ending at a line boundary that parses;
    a sample with no such non-empty prefix does not parse)."""
    return parse_stats(samples)["parse_share"]


def distinct_n(samples: Sequence[str], n: int, *, unit: str = "word") -> float:
    """Distinct n-grams over all n-grams, pooled over the samples (Li et al., 2016).

    ``unit="word"`` cuts each sample at whitespace (``str.split()``); ``unit="char"``
    uses characters. n-grams never span two samples. 0.0 when no sample is long
    enough to hold an n-gram.
    """
    if n < 1:
        raise GenzooError(f"distinct-n needs n >= 1, got {n}")
    if unit not in ("word", "char"):
        raise GenzooError(f"unknown distinct-n unit {unit!r}; choose 'word' or 'char'")
    seen, total = set(), 0
    for s in samples:
        units = s.split() if unit == "word" else list(s)
        grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0

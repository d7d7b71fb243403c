"""Chorale metrics: n-gram baselines on the same tokens, and voices kept in range.

The baselines are what the music transformer must beat: add-k smoothed n-gram models (n = 1..6, k
chosen on the validation chorales) counted on the training tokens, scored in bits per token on the
test chorales' tokens, the tokens the model is scored on. ``in_range_share``: the share of samples
whose every note lies in its voice's range (``genzoo.data.chorales.RANGES``).
"""

from __future__ import annotations

import math
from collections import Counter

from genzoo.data import chorales

ORDERS = (1, 2, 3, 4, 5, 6)  # 6: a whole grid step (| and 4 voices) of context
KS = (0.001, 0.01, 0.1, 1.0)


def _counts(ids: list[int], n: int) -> tuple[Counter, Counter]:
    grams = Counter(tuple(ids[i - n + 1 : i + 1]) for i in range(n - 1, len(ids)))
    contexts = Counter(tuple(ids[i - n + 1 : i]) for i in range(n - 1, len(ids)))
    return grams, contexts


def _bits(ids: list[int], grams: Counter, contexts: Counter, n: int, k: float, vocab: int) -> float:
    total = 0.0
    for i in range(max(1, n - 1), len(ids)):  # the first token is context, as for the model
        g = tuple(ids[i - n + 1 : i + 1])
        total -= math.log2((grams.get(g, 0) + k) / (contexts.get(g[:-1], 0) + k * vocab))
    return total / max(1, len(ids) - max(1, n - 1))


def ngram_metrics(tokenizer) -> dict:
    from genzoo.data import load_dataset

    ids = {s: load_dataset(chorales.NAME, s, tokenizer=tokenizer).x.tolist() for s in ("train", "val", "test")}
    vocab = tokenizer.vocab_size
    out, best = {}, (math.inf, 0)
    for n in ORDERS:
        grams, contexts = _counts(ids["train"], n)
        k = min(KS, key=lambda k: _bits(ids["val"], grams, contexts, n, k, vocab))
        bits = _bits(ids["test"], grams, contexts, n, k, vocab)
        out[f"ngram{n}_bits_per_token"] = bits
        best = min(best, (bits, n))
    out.update(ngram_best_bits_per_token=best[0], ngram_best_order=best[1])
    return out


def in_range_share(texts: list[str]) -> float:
    ok = 0
    for text in texts:
        voices = chorales.decode(text)
        ok += all(lo <= p <= hi for (lo, hi), notes in zip(chorales.RANGES.values(), voices) for _, _, p in notes)
    return ok / max(1, len(texts))

"""Chorale metrics: n-gram baselines on the same tokens, and voices kept in range.

The baselines are what the music transformer must beat: add-k smoothed n-gram models (n = 1..6, k
chosen on the validation chorales) counted on the training tokens, scored in bits per token on the
test chorales' tokens, the tokens the model is scored on. ``in_range_share``: the share of samples
whose every note lies in its voice's range (``genzoo.data.chorales.RANGES``).

Music statistics of samples against the held-out (test) chorales (``music_metrics``):

* ``pitch_class_js``: Jensen-Shannon divergence (base 2, so in [0, 1]) between the key-aligned
  pitch-class histogram of the samples' note onsets, pooled over the four voices, and the test
  chorales'. Key-aligned: each chorale's histogram is rotated so that its most frequent pitch class
  is 0 before pooling. Raw pooling would measure the spread of keys instead of the use of the
  scale: a model trained on chorales transposed by -3..+3 writes in every key, so its pooled
  histogram came out nearly flat (64 samples of runs/bq/chorales: every class 0.075..0.096), while
  the 10 test chorales sit in a few keys. JS rather than KL: it is finite when one histogram has an empty bin (a sample set that never
  writes F#), symmetric and bounded, and its square root is a metric.
* ``interval_js``: the same for melodic intervals (semitones from a note to the next one of the
  same voice with no rest between), bins -12..+12 plus one for each direction beyond an octave,
  pooled over the four voices (per voice, 20-64 short samples leave the leap bins nearly empty).
* ``no_parallels_share``: the share of samples with no parallel fifth or octave between the outer
  voices. Take the times where the soprano or the bass starts a note while both sound; for two
  successive such times (no rest in either voice between) the motion is parallel when both voices
  move (a new pitch each), in the same direction, and |soprano - bass| mod 12 is 7 both times
  (fifths) or 0 both times (octaves and unisons).

Histograms pool every note of a set, so their divergence shrinks with more notes; the floor is
therefore the same statistic on as many held-out (validation) windows of the samples' length, scored
against the same test chorales: what real music of that length and amount scores.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

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


# ----------------------------------------------------------------------------- music statistics

MAX_LEAP = 12  # interval bins -12..+12 semitones, and one beyond each end


def _documents(text: str) -> list[list[list[tuple[int, int, int]]]]:
    """The notes of each chorale in ``text`` (several when a sample ran past an end of document)."""
    return [chorales.decode(doc) for doc in text.split(chorales.DOC_SEP) if doc]


def pitch_class_histogram(texts: list[str], key_aligned: bool = True) -> np.ndarray:
    """(12,) counts of note onsets by pitch class, all voices pooled: with ``key_aligned`` each
    chorale's counts rotated so its most frequent class (the lowest on a tie) is 0, else C = 0."""
    h = np.zeros(12)
    for text in texts:
        for voices in _documents(text):
            doc = np.zeros(12)
            for notes in voices:
                for _, _, p in notes:
                    doc[p % 12] += 1
            h += np.roll(doc, -int(doc.argmax())) if key_aligned else doc
    return h


def interval_histogram(texts: list[str]) -> np.ndarray:
    """(2 * MAX_LEAP + 3,) counts of melodic intervals: bin 0 below -MAX_LEAP, bin i the interval
    i - MAX_LEAP - 1, the last bin above +MAX_LEAP; successive notes of one voice with no rest between."""
    h = np.zeros(2 * MAX_LEAP + 3)
    for text in texts:
        for voices in _documents(text):
            for notes in voices:
                for (_, end, p), (start, _, q) in zip(notes, notes[1:]):
                    if end == start:
                        h[min(max(q - p, -MAX_LEAP - 1), MAX_LEAP + 1) + MAX_LEAP + 1] += 1
    return h


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence in bits between two histograms (normalized here); 1.0 (the most)
    when either is empty: a set with no notes is as far as can be."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"histograms of different sizes: {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return 1.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2))


def _sounding(notes, length: int) -> list[int | None]:
    out: list[int | None] = [None] * length
    for s, e, p in notes:
        out[s:e] = [p] * (e - s)
    return out


def parallel_motions(text: str, upper: int = 0, lower: int = 3) -> tuple[int, int]:
    """(parallel fifths, parallel octaves or unisons) between voices ``upper`` and ``lower``
    (default soprano and bass) in ``text`` (definition in the module doc)."""
    fifths = octaves = 0
    for voices in _documents(text):
        a, b = voices[upper], voices[lower]
        length = max([e for _, e, _ in a + b] or [0])
        sa, sb = _sounding(a, length), _sounding(b, length)
        onsets = {s for s, _, _ in a} | {s for s, _, _ in b}
        prev = None  # the last (soprano, bass) taken at an onset, None after a rest
        for t in range(length):
            if sa[t] is None or sb[t] is None:
                prev = None
                continue
            if t not in onsets:
                continue
            cur = (sa[t], sb[t])
            if prev is not None:
                da, db = cur[0] - prev[0], cur[1] - prev[1]
                if da and db and (da > 0) == (db > 0):
                    before, after = abs(prev[0] - prev[1]) % 12, abs(cur[0] - cur[1]) % 12
                    fifths += before == after == 7
                    octaves += before == after == 0
            prev = cur
    return fifths, octaves


def no_parallels_share(texts: list[str]) -> float:
    """The share of samples with no parallel fifths or octaves between soprano and bass."""
    return sum(parallel_motions(t) == (0, 0) for t in texts) / max(1, len(texts))


def heldout_windows(split: str, tokens: int, n: int) -> list[str]:
    """``n`` windows of ``tokens // 5`` grid steps (a sample's length) cut from the split's chorales
    without overlap, spread evenly over all there are (all of them when there are fewer than ``n``)."""
    steps = max(1, tokens // 5)
    width = steps * 5
    windows = [doc[i : i + width] for doc in chorales.documents(split) for i in range(0, len(doc) - width + 1, width)]
    if len(windows) > n:
        windows = [windows[int(i)] for i in np.linspace(0, len(windows) - 1, n).round()]
    return windows


def stats(texts: list[str], reference: list[str]) -> dict:
    """in_range_share, pitch_class_js, interval_js (against ``reference``) and no_parallels_share of ``texts``."""
    return {"in_range_share": in_range_share(texts),
            "pitch_class_js": js_divergence(pitch_class_histogram(texts), pitch_class_histogram(reference)),
            "interval_js": js_divergence(interval_histogram(texts), interval_histogram(reference)),
            "no_parallels_share": no_parallels_share(texts)}


def music_metrics(texts: list[str], tokens: int | None = None) -> dict:
    """``stats`` of the samples against the test chorales, and (``*_floor``) of as many validation
    windows of the samples' length (``tokens``, default the longest sample) against the same test chorales."""
    if not texts:
        raise ValueError("music_metrics needs at least one sample")
    reference = chorales.documents("test")
    tokens = tokens or max(len(t) for t in texts)
    floor = stats(heldout_windows("val", tokens, len(texts)), reference)
    return {**stats(texts, reference), **{f"{k}_floor": v for k, v in floor.items()}}

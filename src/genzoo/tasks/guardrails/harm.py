"""Harmful content, offline: ``alt-profanity-check`` (a maintained fork of profanity-check).

It ships its model inside the wheel (a linear SVM over TF-IDF word n-grams, ~1 MB, calibrated to a
probability; trained on public offensive-comment data) and never downloads anything; ~40 ms a
text through the policy (whole text and each sentence) after a ~1 s first import. ``detoxify`` was ruled out: it fetches weights at run time.

What it catches: insults, slurs, swearing and abusive or hateful phrasing that uses the vocabulary of
such comments (measured: 20/20 abusive sentences, 0/200 false alarms on Python's docs). What it does not: harm said politely
(instructions for a weapon, self-harm advice, scams), threats without offensive words, obfuscated
spellings it never saw, languages other than English; and a technical text that quotes a swear word
is flagged like an insult. Measured: 0/10 politely worded harmful sentences caught. It is a screen
for abuse, not a safety classifier.
"""

from __future__ import annotations

from genzoo.core.errors import GenzooError

DEFAULT_THRESHOLD = 0.5  # the package's own cut (predict); see benchmarks/guardrails.md for the counts at it


def harm_scores(texts: list[str]):
    """The probability that each text is offensive, in [0, 1]."""
    try:
        from profanity_check import predict_prob
    except ImportError as e:
        raise GenzooError("guardrails: the [harm] rule needs alt-profanity-check: pip install alt-profanity-check") from e
    return [float(p) for p in predict_prob(list(texts))]


def harm_problem(text: str, threshold: float) -> dict | None:
    """The score and the worst sentence when ``text`` (or one of its sentences) reaches ``threshold``.

    Sentence by sentence as well as whole: one abusive sentence in a long, clean answer scores low
    as a whole (the TF-IDF vector is dominated by the clean words)."""
    from genzoo.tasks.guardrails.grounding import sentences

    parts = [text, *(s for s in sentences(text) if s != text)]
    scores = harm_scores(parts)
    worst = max(range(len(parts)), key=scores.__getitem__)
    if scores[worst] < threshold:
        return None
    return {"score": round(scores[worst], 3), "threshold": threshold}

"""Grounding for RAG: is each sentence of an answer supported by the retrieved sources, and was any
source relevant to the question at all?

Lexical support (the default): a sentence's content words (lowercased, scikit-learn's English stop
words removed, a plural/-ed/-ing suffix cut) that occur in the sources, as a share of its content
words. A sentence with fewer than ``MIN_WORDS`` content words ("Yes.") is not judged. MiniLM support
(``method = "minilm"``): the best cosine between the sentence and a source sentence. Which is used by
default, and the thresholds, come from benchmarks/guardrails.md (180 pydoc cases): lexical at 0.5
caught 46/60 unsupported sentences with 0/120 false alarms in 0.3 s; MiniLM caught 60/60 at 0.5 but
also flagged 30/120 supported ones, and took 447 s on the shared 2-core CPU. Lexical is the default.
"""

from __future__ import annotations

import re

from genzoo.core.errors import GenzooError

NOT_FOUND = "not found in the sources"
MIN_WORDS = 3
LEXICAL_THRESHOLD = 0.5  # share of a sentence's content words found in the sources (benchmarks/guardrails.md)
MINILM_THRESHOLD = 0.5  # cosine, all-MiniLM-L6-v2: 60/60 caught, 30/120 false alarms (benchmarks/guardrails.md)
RELEVANCE_THRESHOLD = 0.3  # share of the question's words in the best source: 37/60 off-topic caught, 0/60 on-topic refused
_CITATION = re.compile(r"\[\d+(?::[^\]]*)?\]")  # "[1]", "[2: line 3-4]" of an extractive answer
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])|\n+")
_WORD = re.compile(r"[a-z0-9_]+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SPLIT.split(_CITATION.sub(" ", text)) if s.strip()]


def content_words(text: str) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS and len(w) > 1}


def _stem(w: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def relevance(question: str, sources: list[str]) -> float:
    """The largest share of the question's content words that one source holds (1.0 for a question of stop words only)."""
    q = content_words(question)
    if not q:
        return 1.0
    return max((len(q & content_words(s)) / len(q) for s in sources), default=0.0)


def support(answer: str, sources: list[str], method: str = "lexical", encoder=None) -> list[tuple[str, float]]:
    """(sentence, support) for each sentence of ``answer`` that has at least ``MIN_WORDS`` content words."""
    judged = [s for s in sentences(answer) if len(content_words(s)) >= MIN_WORDS]
    if not judged:
        return []
    if method == "lexical":
        known = set().union(*map(content_words, sources)) if sources else set()
        return [(s, len(content_words(s) & known) / len(content_words(s))) for s in judged]
    if method == "minilm":
        import numpy as np

        source_sentences = [x for s in sources for x in sentences(s)]
        if not source_sentences:
            return [(s, 0.0) for s in judged]
        if encoder is None:
            from genzoo.tasks.encoders import MiniLMEncoder

            encoder = MiniLMEncoder()
        a, b = encoder.encode(judged), encoder.encode(source_sentences)  # L2-normalised rows
        best = (np.asarray(a) @ np.asarray(b).T).max(1)
        return [(s, float(c)) for s, c in zip(judged, best)]
    raise GenzooError(f"guardrails: grounding method must be lexical or minilm, got {method!r}")


def unsupported(answer: str, sources: list[str], threshold: float, method: str = "lexical", encoder=None) -> list[dict]:
    """The sentences below ``threshold``, with their support (rounded), in answer order."""
    return [{"sentence": s[:120], "support": round(x, 3)} for s, x in support(answer, sources, method, encoder) if x < threshold]

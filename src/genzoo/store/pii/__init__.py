"""PII redaction on Microsoft Presidio: spaCy NER for names plus validated recognizers for the rest.

>>> from genzoo.store.pii import redact
>>> redact("Maria Gonzalez signed it; call 2125550147 now").text
'<PERSON> signed it; call <PHONE> now'

Same ``Finding``/``Redaction`` as the hand-written ``genzoo.store.redact`` (kept for comparison). Findings carry
the kind and the span in the original text, never the value. Where two findings overlap, the earlier kind in
``KINDS`` wins (a checksum-validated number beats a phone reading of its digits; an address beats the place or
person name inside it), then the longer span.

Texts longer than ``NER_MAX_CHARS`` skip the statistical NER (spaCy runs ~50k characters a second here): every
other recognizer, including the name-list one, still runs, so a 1 MB text takes seconds, not half a minute.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

from genzoo.core.errors import GenzooError
from genzoo.store.redact import Finding, Redaction, apply_placeholders

__all__ = ["KINDS", "PLACEHOLDERS", "Finding", "Redaction", "find_pii", "redact", "redact_many"]

# Presidio entity -> our kind; the order of KINDS is also the precedence when findings overlap
_ENTITY_KIND = {
    "SECRET": "secret", "EMAIL_ADDRESS": "email", "CREDIT_CARD": "card", "IBAN_CODE": "iban", "US_SSN": "ssn",
    "IP_ADDRESS": "ip", "PASSPORT": "passport", "DATE_OF_BIRTH": "dob", "PHONE_NUMBER": "phone",
    "STREET_ADDRESS": "address", "PERSON": "person",
}
KINDS = tuple(_ENTITY_KIND.values())
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in KINDS}
NER_MAX_CHARS = 100_000
_BATCH_SIZE = 64


def find_pii(text: str) -> list[Finding]:
    """Non-overlapping findings in ``text``, sorted by position."""
    return _findings_for(_check(text), _artifacts([text])[0])


def redact(text: str) -> Redaction:
    """Replace every finding in ``text`` by its typed placeholder (``<PERSON>``, ``<EMAIL>`` ...)."""
    return _apply(text, find_pii(text))


def redact_many(texts: Iterable[str]) -> list[Redaction]:
    """``redact`` for many texts at once: spaCy processes them in batches (``nlp.pipe``), which is faster."""
    texts = [_check(t) for t in texts]
    out = []
    for i in range(0, len(texts), _BATCH_SIZE):
        chunk = texts[i:i + _BATCH_SIZE]
        for text, artifacts in zip(chunk, _artifacts(chunk)):
            out.append(_apply(text, _findings_for(text, artifacts)))
    return out


def _check(text):
    if not isinstance(text, str):
        raise GenzooError(f"redaction takes a str, got {type(text).__name__}; decode bytes to text first")
    return text


def _artifacts(texts: list[str]):
    """Presidio's NLP artifacts per text: NER for texts up to ``NER_MAX_CHARS``, none (no entities) beyond."""
    from presidio_analyzer.nlp_engine import NlpArtifacts

    from genzoo.store.pii.engine import get_analyzer

    engine = get_analyzer().nlp_engine
    nlp = engine.get_nlp("en")
    small = [i for i, t in enumerate(texts) if len(t) <= NER_MAX_CHARS]
    out = [None] * len(texts)
    docs = nlp.pipe([_SURROGATE.sub("\ufffd", texts[i]) for i in small], batch_size=_BATCH_SIZE)
    for i, doc in zip(small, docs):
        out[i] = engine._doc_to_nlp_artifact(doc, "en")
    empty = nlp.make_doc("")
    for i, art in enumerate(out):
        if art is None:
            out[i] = NlpArtifacts(entities=[], tokens=empty, tokens_indices=[], lemmas=[], nlp_engine=engine,
                                  language="en")
    return out


def _findings_for(text: str, artifacts) -> list[Finding]:
    from genzoo.store.pii.engine import get_analyzer

    if not text.strip():
        return []
    # spaCy cannot encode lone surrogates; a same-length stand-in keeps every span pointing into the original
    text = _SURROGATE.sub("\ufffd", text)
    results = []
    for offset, piece in _pieces(text):
        # Presidio de-duplicates results pairwise (quadratic), so huge texts are analysed in line-aligned pieces
        for r in get_analyzer().analyze(text=piece, language="en", nlp_artifacts=artifacts):
            r.start += offset
            r.end += offset
            results.append(r)
    rank = {kind: i for i, kind in enumerate(KINDS)}
    candidates = sorted(
        ((_ENTITY_KIND[r.entity_type], r.start, r.end) for r in results if r.entity_type in _ENTITY_KIND and r.end > r.start),
        key=lambda c: (rank[c[0]], c[1] - c[2], c[1]))
    taken: list[Finding] = []  # kept sorted by start and non-overlapping, so two neighbours decide (bisect)
    starts: list[int] = []
    for kind, start, end in candidates:
        at = bisect.bisect_right(starts, start)
        if (at and taken[at - 1].end > start) or (at < len(taken) and taken[at].start < end):
            continue
        starts.insert(at, start)
        taken.insert(at, Finding(kind, start, end))
    return taken


_SURROGATE = re.compile("[\ud800-\udfff]")
_PIECE = 20_000


def _pieces(text: str):
    """``(offset, piece)``: the whole text if it fits NER, else ~20k-character pieces cut after a newline."""
    if len(text) <= NER_MAX_CHARS:
        yield 0, text
        return
    start = 0
    while start < len(text):
        end = min(len(text), start + _PIECE)
        if end < len(text):
            cut = text.rfind("\n", start + _PIECE // 2, end)
            end = cut + 1 if cut >= 0 else end
        yield start, text[start:end]
        start = end


def _apply(text: str, findings: list[Finding]) -> Redaction:
    return apply_placeholders(text, findings, PLACEHOLDERS)

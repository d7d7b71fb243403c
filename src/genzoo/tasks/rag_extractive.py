"""Extractive answers: the retrieved sentences that best answer the question, quoted with their lines.

RAG without a generator, so that it is useful on a CPU with no large checkpoint. Every sentence of
the retrieved chunks is scored by

    0.45 * cosine(question, sentence)   (the store's text encoder, MiniLM by default)
  + 0.35 * overlap(question, sentence)  (share of the question's content words, idf-weighted)
  + 0.10 * overlap(question, heading)   (the section the sentence sits in)
  + 0.10 * retrieval score of its chunk (relative to the best chunk)

and without an encoder (keyword-only) the cosine's weight goes to the overlap. Headings are never
quoted (they name a section, they do not answer), nor are sentences sharing no word with the
question unless the encoder finds them close. The best sentences within ``RELATIVE`` of the top
one are the answer, best first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genzoo.store.rag import Source
from genzoo.tasks.rag_text import idf, line_of, overlap, sentences, terms

WEIGHTS = {"similarity": 0.45, "overlap": 0.35, "heading": 0.10, "retrieval": 0.10}
KEYWORD_WEIGHTS = {"similarity": 0.0, "overlap": 0.75, "heading": 0.12, "retrieval": 0.13}
RELATIVE = 0.8  # a sentence is quoted when it scores at least this share of the best one
MIN_WORDS = 3  # shorter pieces ("See below.") answer nothing


@dataclass
class Quote:
    text: str
    source: Source
    start_line: int
    end_line: int
    score: float

    @property
    def where(self) -> str:
        return f"{self.source.uri}:{self.start_line}" + (f"-{self.end_line}" if self.end_line != self.start_line else "")


def extract(question: str, sources: list[Source], *, encoder=None, n: int = 3) -> list[Quote]:
    """The at most ``n`` best sentences of ``sources`` for ``question``, best first."""
    cands: list[tuple[Source, object]] = []
    for s in sources:
        for sent in sentences(s.text):
            if not sent.heading and len(sent.text.split()) >= MIN_WORDS:
                cands.append((s, sent))
    if not cands:
        return []
    q = terms(question)
    words = [set(terms(sent.text)) for _, sent in cands]
    weights = idf(words)
    top = max(s.score for s in sources) or 1.0
    ranks = {s.chunk_id: i for i, s in enumerate(sources)}
    sim = _similarity(encoder, question, [sent.text for _, sent in cands])
    w = WEIGHTS if sim is not None else KEYWORD_WEIGHTS
    scored = []
    for i, ((src, sent), ws) in enumerate(zip(cands, words)):
        ov = overlap(q, ws, weights)
        cos = float(sim[i]) if sim is not None else 0.0
        if ov == 0 and cos < 0.5:
            continue
        retrieval = src.score / top if src.score > 0 else 1.0 / (1 + ranks[src.chunk_id])
        score = (w["similarity"] * max(cos, 0.0) + w["overlap"] * ov + w["heading"] * overlap(q, set(terms(sent.section)), weights)
                 + w["retrieval"] * retrieval)
        first = src.start_line
        scored.append(Quote(sent.text, src, line_of(src.text, sent.start, first), line_of(src.text, max(sent.end - 1, sent.start), first),
                            score))
    scored.sort(key=lambda x: -x.score)
    out, seen = [], set()
    for quote in scored:
        if quote.score < RELATIVE * scored[0].score or len(out) == n:
            break
        if quote.text not in seen:  # overlapping chunks repeat sentences
            seen.add(quote.text)
            out.append(quote)
    return out


def _similarity(encoder, question: str, texts: list[str]):
    """Cosine of each text with the question, or None without a text encoder."""
    if encoder is None or getattr(encoder, "kind", "text") != "text":
        return None
    v = np.asarray(encoder.encode([question] + texts), np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-9
    return v[1:] @ v[0]


def answer_text(quotes: list[Quote], sources: list[Source]) -> str:
    """The quotes, one a line, each cited by its source's number and its own lines."""
    number = {s.chunk_id: i for i, s in enumerate(sources, 1)}
    return "\n".join(f"{q.text} [{number[q.source.chunk_id]}: line {q.start_line}"
                     + (f"-{q.end_line}]" if q.end_line != q.start_line else "]") for q in quotes)

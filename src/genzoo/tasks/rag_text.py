"""Sentences and query terms for RAG: what both the prompt budget (``rag_budget``) and the
extractive answer (``rag_extractive``) need to tell which part of a retrieved chunk answers a question.

No model here: terms are lower-cased words with stop words left out and a light suffix strip
("stopped" and "stop" match), sentences are character spans of the chunk so that each one can be
cited by its own lines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

STOP_WORDS = frozenset("""a an and are as at be been being by can could did do does doing for from had has have how i if in into is it its
of on or our should so than that the their them then there these they this those to use used using was we were what when where which
who whom why will with would you your about after before also any each just may more most much my no not only other over same some
such too under very via want get tell me explain describe mean means meant""".split())

_WORD = re.compile(r"[A-Za-z0-9_]+")
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ied", "ies", "ed", "es", "ly", "s")
_BLOCK = re.compile(r"\S(?:.*?\S)??(?=\s*\n[ \t]*\n|\s*\Z)", re.S)  # a paragraph: text up to a blank line
_BREAK = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[`*]*[A-Z0-9])|\n(?=[ \t]*(?:#|[-*+] |\d+[.)] |```|>))")
_RULE = re.compile(r"^[ \t]*([*=\-~^#])\1{2,}[ \t]*$")  # an RST underline: the line above is a heading


def stem(word: str) -> str:
    """Crude suffix strip so that inflections meet ("stopped" -> "stopp" ~ "stop"): doubled final
    consonants are undoubled; words of 4 letters or fewer are left alone."""
    w = word.lower()
    if len(w) > 4:
        for suf in _SUFFIXES:
            if w.endswith(suf) and len(w) - len(suf) >= 3:
                w = w[: -len(suf)]
                break
        if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiousl":
            w = w[:-1]
        if len(w) > 4 and w.endswith("e"):
            w = w[:-1]
    return w


def terms(text: str) -> list[str]:
    """Content words of ``text``, stemmed, in order (repeats kept)."""
    return [stem(w) for w in _WORD.findall(text) if w.lower() not in STOP_WORDS and w.strip("_")]


@dataclass
class Sentence:
    start: int  # character offsets in the text it was cut from
    end: int
    text: str  # whitespace collapsed
    heading: bool  # a Markdown or RST heading: context for the sentences below it, not an answer
    section: str  # the nearest heading above it ("" when none)


def sentences(text: str) -> list[Sentence]:
    """``text`` cut into sentences (and headings, list items, code lines), with their offsets."""
    out: list[Sentence] = []
    section = ""
    for block in _BLOCK.finditer(text):
        lines = block.group().split("\n")
        # RST: "Title\n=====" -> a heading line; the rule itself is dropped
        if len(lines) >= 2 and _RULE.match(lines[1]) and not _RULE.match(lines[0]):
            section = lines[0].strip()
            out.append(Sentence(block.start(), block.start() + len(lines[0]), section, True, section))
            rest = block.group().find("\n", len(lines[0]) + 1)
            if rest < 0:
                continue
            pieces = _split(text, block.start() + rest + 1, block.end())
        else:
            pieces = _split(text, block.start(), block.end())
        for s, e in pieces:
            raw = text[s:e]
            if _RULE.match(raw):
                continue
            clean = " ".join(raw.split())
            heading = clean.startswith("#")
            if heading:
                clean = clean.lstrip("#").strip()
                section = clean
            if clean:
                out.append(Sentence(s, e, clean, heading, section))
    return out


def _split(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, s = [], start
    chunk = text[start:end]
    for m in _BREAK.finditer(chunk):
        cut = start + m.start()
        if text[s:cut].strip():
            spans.append(_strip(text, s, cut))
        s = start + m.end()
    if text[s:end].strip():
        spans.append(_strip(text, s, end))
    # a heading line ends at its newline even without a blank line after it
    out = []
    for a, b in spans:
        nl = text.find("\n", a, b)
        if text[a] == "#" and nl > 0 and text[nl + 1 : b].strip():
            out += [_strip(text, a, nl), _strip(text, nl + 1, b)]
        else:
            out.append((a, b))
    return out


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def line_of(text: str, offset: int, first_line: int) -> int:
    return first_line + text.count("\n", 0, offset)


def idf(docs: list[set[str]]) -> dict[str, float]:
    """Inverse document frequency over a handful of sentences: rare words count more."""
    n, df = len(docs), {}
    for d in docs:
        for t in d:
            df[t] = df.get(t, 0) + 1
    return {t: math.log(1.0 + n / c) for t, c in df.items()}


def overlap(query: list[str], words: set[str], weights: dict[str, float]) -> float:
    """Share (0..1) of the query's weighted terms found in ``words``."""
    q = set(query)
    total = sum(weights.get(t, 1.0) for t in q)
    return sum(weights.get(t, 1.0) for t in q if t in words) / total if total else 0.0


def excerpt(text: str, question: str, count_tokens, room: int) -> str:
    """The best sentences of ``text`` for ``question`` (query-term overlap; headings last), in
    document order, that fit in ``room`` tokens; the best sentence cut around its first query term
    when no whole sentence fits; "" when nothing does."""
    q = terms(question)
    sents = [s for s in sentences(text)] or [Sentence(0, len(text), " ".join(text.split()), False, "")]
    weights = idf([set(terms(s.text)) for s in sents])
    score = {i: overlap(q, set(terms(s.text)), weights) - (0.5 if s.heading else 0.0) for i, s in enumerate(sents)}
    order = sorted(score, key=lambda i: (-score[i], i))
    chosen: list[int] = []
    for i in order:
        if chosen and score[i] <= 0:
            break  # sentences sharing no term with the question are not worth the tokens
        if count_tokens(" ".join(sents[j].text for j in sorted(chosen + [i]))) <= room:
            chosen.append(i)
        elif not chosen:
            break  # the best sentence does not fit whole: cut it (below) rather than quote a worse one
    if chosen:
        return " ".join(sents[j].text for j in sorted(chosen))
    best = sents[order[0]].text
    words = best.split()
    qs = set(q)
    at = next((n for n, w in enumerate(words) if set(terms(w)) & qs), 0)
    lo, hi = at, at + 1  # a window of words from the first query term: rightwards first (what a term is follows it), then left
    if count_tokens(words[lo]) > room:
        return ""
    fits = lambda a, b: count_tokens("... " + " ".join(words[a:b]) + " ...") <= room  # noqa: E731
    while hi < len(words) and fits(lo, hi + 1):
        hi += 1
    while lo > 0 and fits(lo - 1, hi):
        lo -= 1
    piece = " ".join(words[lo:hi])
    marked = ("... " if lo else "") + piece + (" ..." if hi < len(words) else "")
    return marked if count_tokens(marked) <= room else piece

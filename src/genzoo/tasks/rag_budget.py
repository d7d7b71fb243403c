"""A RAG prompt that fits the model's context, whatever that is (genzoo's own GPTs have 64-256 tokens).

Order of sacrifice, each step noted for the user: sources beyond the room are first trimmed to
their best sentences around the query terms (``rag_text.excerpt``), then dropped; the answer's
--max-tokens is lowered (down to a quarter of the context) so that at least the top source fits;
only when the question and instructions alone overflow is the instruction left out, then the
question shortened to its content words. Nothing is refused unless the context cannot hold even
that (a few tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.store.rag import Source
from genzoo.tasks.rag_text import excerpt, terms

INSTRUCTION = "Answer from the sources; cite them as [1].\n\n"
MIN_SOURCE_TOKENS = 16  # a source cut shorter than this says too little to be worth its header


@dataclass
class Budget:
    prompt: str
    kept: list[Source]
    dropped: list[Source]
    max_tokens: int
    notes: list[str] = field(default_factory=list)
    trimmed: list[int] = field(default_factory=list)  # chunk ids of kept sources cut to their best sentences


def frames(question: str):
    """(instruction, question tail, note) from the fullest to the leanest."""
    yield INSTRUCTION, f"Question: {question}\nAnswer:", None
    yield "", f"Question: {question}\nAnswer:", "the instruction line was left out to make room"
    yield "", f"Q: {question}\nA:", "the instruction line was left out to make room"
    words = " ".join(w for w in question.split() if terms(w)) or question
    yield "", f"Q: {words}\nA:", f"the question was shortened to its content words ({words!r}) to fit"
    kept = words.split()
    cuts = [" ".join(kept[:n]) for n in range(len(kept) - 1, 0, -1)] + [kept[0][:n] for n in range(len(kept[0]) - 1, 0, -1)]
    for cut in cuts:  # last resort: its first words, then the first characters of the first word
        yield "", f"Q: {cut}\nA:", f"the question was cut to {cut!r} to fit"


def header(n: int, s: Source) -> str:
    # file name and lines only: a full path costs tokens small contexts cannot spare (printed sources give it)
    return f"[{n}] {Path(s.uri).name}:{s.start_line}-{s.end_line}\n"


def fit_prompt(question: str, sources: list[Source], count_tokens, context: int, max_tokens: int) -> Budget:
    """The prompt for ``question`` with as many of ``sources`` (in rank order) as fit in ``context``
    tokens while leaving ``max_tokens`` for the answer, or fewer answer tokens when needed."""
    if max_tokens < 1:
        raise GenzooError(f"--max-tokens must be at least 1, got {max_tokens}")
    floor = max(1, min(max_tokens, context // 4))  # the answer never shrinks below this
    notes: list[str] = []
    for intro, tail, note in frames(question):
        if count_tokens(intro + tail) <= context - floor:
            break
    else:
        raise GenzooError(f"the model's context of {context} tokens cannot hold a question; use a model with a longer context, "
                          "or ask without --model for an extractive answer")
    if note:
        notes.append(note)
    # sources fill what the requested answer leaves; if not even the top source fits, the answer gives way
    room = max(context - max_tokens, count_tokens(intro + tail))
    kept, trimmed, body = _fill(question, sources, count_tokens, intro, tail, room)
    if not kept and sources and room < context - floor:
        kept, trimmed, body = _fill(question, sources[:1], count_tokens, intro, tail, context - floor)
    prompt = intro + body + tail
    answer = min(max_tokens, context - count_tokens(prompt))
    if answer < max_tokens:
        notes.append(f"--max-tokens lowered from {max_tokens} to {answer} to fit the model's context of {context} tokens")
    ids = {s.chunk_id for s in kept}
    dropped = [s for s in sources if s.chunk_id not in ids]
    if trimmed:
        notes.append(f"{len(trimmed)} source(s) cut to their best sentences to fit")
    if dropped:
        notes.append(f"{len(dropped)} source(s) left out for room")
    return Budget(prompt, kept, dropped, answer, notes, trimmed)


def _fill(question, sources, count_tokens, intro, tail, room):
    kept, trimmed, body = [], [], ""
    for s in sources:
        head = header(len(kept) + 1, s)
        whole = head + s.text.strip() + "\n\n"
        if count_tokens(intro + body + whole + tail) <= room:
            body += whole
            kept.append(s)
            continue
        left = room - count_tokens(intro + body + head + "\n\n" + tail)
        if left < MIN_SOURCE_TOKENS:
            continue  # a shorter source further down may still fit
        cut = excerpt(s.text, question, count_tokens, left)
        # a cut worth its header: two content words at least (a bare heading or one word is not)
        if len(terms(cut)) >= 2 and count_tokens(intro + body + head + cut + "\n\n" + tail) <= room:
            body += head + cut + "\n\n"
            kept.append(s)
            trimmed.append(s.chunk_id)
    return kept, trimmed, body

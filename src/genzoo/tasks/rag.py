"""Answer a question from the documents indexed in the store: retrieve, then quote or generate, record.

``genzoo.store.rag`` indexes documents and retrieves chunks; this module answers. With a model it
puts the retrieved sources into a prompt budgeted to the model's context (``rag_budget``: sources
trimmed to their best sentences, then dropped; --max-tokens lowered with a note rather than
refused) and generates with a genzoo text model or a local Hugging Face folder. Without one it
answers extractively (``rag_extractive``): the retrieved sentences that best answer the question,
quoted with their lines. Either way the store gets plain data to record (the manifest as a dict,
the model as a ``ModelRecord``; family "extractive" for a quoted answer), with ``grounded`` links
to the sources the answer used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.store.rag import Source, check_can_record, record_answer, retrieve
from genzoo.tasks.rag_budget import INSTRUCTION, MIN_SOURCE_TOKENS, fit_prompt

RAG_FORMAT = "genzoo.rag/1"


@dataclass
class Answer:
    text: str
    sources: list[Source]
    generation_id: int | None
    prompt: str  # "" for an extractive answer
    dropped: list[Source] = field(default_factory=list)  # retrieved but left out (no room, or nothing quoted)
    notes: list[str] = field(default_factory=list)  # what the budget changed: trimmed sources, fewer --max-tokens
    kind: str = "generative"  # or "extractive"
    quotes: list = field(default_factory=list)  # rag_extractive.Quote, for an extractive answer
    verdict: object = None  # genzoo.tasks.guardrails.Verdict when asked with a policy; ``text`` is then what it lets through


def build_prompt(question: str, sources: list[Source], count_tokens, budget: int) -> tuple[str, list[Source]]:
    """(The fixed-budget prompt of before ``rag_budget.fit_prompt``, kept for callers of it.) The prompt and the sources it holds: sources in rank order while they fit in ``budget``
    tokens (the last one cut to fit, else left out); the question is always kept whole (it is the
    point of the prompt). Sources are named by file name and lines (a full path costs tokens
    that small contexts cannot spare); the printed sources give the full path."""
    tail = f"Question: {question}\nAnswer:"
    used: list[Source] = []
    body = INSTRUCTION
    for s in sources:
        header = f"[{len(used) + 1}] {Path(s.uri).name}:{s.start_line}-{s.end_line}\n"
        block = header + s.text.strip() + "\n\n"
        if count_tokens(body + block + tail) <= budget:
            body += block
            used.append(s)
            continue
        room = budget - count_tokens(body + tail)
        if room >= MIN_SOURCE_TOKENS + count_tokens(header):  # cut the source: characters shrink until the tokens fit
            text = s.text.strip()
            keep = len(text)
            while keep > 0 and count_tokens(body + header + text[:keep] + "\n\n" + tail) > budget:
                keep = int(keep * 0.8)
            if keep >= MIN_SOURCE_TOKENS:
                body += header + text[:keep] + "\n\n"
                used.append(s)
        break
    prompt = body + tail
    if count_tokens(prompt) > budget:
        raise GenzooError(f"the question alone needs more than the {budget} tokens the model's context leaves; ask a shorter question "
                          "or lower --max-tokens")
    return prompt, used


def ask(store, question: str, model_path: str | Path | None = None, *, k: int = 4, mode: str = "hybrid", max_tokens: int = 128,
        temperature: float = 0.0, seed: int = 0, device: str = "cpu", record: bool = True, loaded=None,
        sentences: int = 3, guardrails=None) -> Answer:
    """Retrieve, then generate with a genzoo text model or a local Hugging Face folder (``model_path``,
    or ``loaded``: a (model, tokenizer) pair already loaded, as benchmarks ask many), or, with
    neither, quote the best ``sentences`` of the sources; record unless ``record`` is False.
    ``guardrails``: a ``genzoo.tasks.guardrails.Policy`` checked on the answer before it is recorded
    (its verdict goes into the manifest under "guardrails"; the answer becomes what it lets through)."""
    if record:  # refuse before the work, not after it
        check_can_record(store)
    if model_path is None and loaded is None:
        return _ask_extractive(store, question, k=k, mode=mode, record=record, n=sentences, guardrails=guardrails)
    from genzoo.tasks.textgen import generate_text, load_text_model

    model, tokenizer = loaded or load_text_model(model_path, device)
    sources = _retrieve(store, question, k, mode)
    context = int(model.config.context)
    b = fit_prompt(question, sources, lambda t: len(tokenizer.encode(t)), context, max_tokens)
    options = {"max_tokens": b.max_tokens, "temperature": temperature}
    result = generate_text(model, tokenizer, [b.prompt], seed=seed, **options)[0]
    answer = result.text.strip()
    verdict, shown = _guard(guardrails, answer, question, b.kept)
    gid = None
    if record:
        budget = {"requested_max_tokens": max_tokens, "context": context, "notes": b.notes, "trimmed": b.trimmed,
                  "dropped": [{"chunk_id": s.chunk_id, "where": s.where} for s in b.dropped]}
        gid = _record(store, model_path, model, question, b.prompt, answer, b.kept, seed, options, mode, budget,
                      guarded=(shown, _entry(guardrails, verdict)))
    return Answer(shown, b.kept, gid, b.prompt, b.dropped, b.notes, verdict=verdict)


def _guard(policy, answer: str, question: str, sources: list[Source]):
    """(the verdict or None, the text to show and record)."""
    if policy is None:
        return None, answer
    v = policy.check_text(answer, prompt=question, sources=[s.text for s in sources])
    return v, v.text


def _entry(policy, verdict) -> dict | None:
    return None if verdict is None else policy.manifest_entry(verdict)


def _retrieve(store, question: str, k: int, mode: str) -> list[Source]:
    sources = retrieve(store, question, k, mode=mode)
    if not sources and not _any_document(store):
        raise GenzooError("no documents are indexed in this store (or none you may see); index some first: genzoo rag index PATH")
    return sources


def _any_document(store) -> bool:
    from genzoo.store.visibility import seen_by

    seen, params = seen_by(store.viewer, "d")
    return bool(store.backend.rows(f"SELECT 1 FROM documents d WHERE d.superseded_by IS NULL AND {seen} LIMIT 1", params))


EXTRACTIVE = "extractive"


def _ask_extractive(store, question: str, *, k: int, mode: str, record: bool, n: int, guardrails=None) -> Answer:
    """Quote the retrieved sentences that best answer the question; no model is run."""
    from genzoo.tasks.rag_extractive import answer_text, extract

    if n < 1:
        raise GenzooError(f"--sentences must be at least 1, got {n}")
    sources = _retrieve(store, question, k, mode)
    encoder = store.encoder if mode != "keyword" else None  # keyword mode loads no model at all
    quotes = extract(question, sources, encoder=encoder, n=n)
    order = list(dict.fromkeys(q.source.chunk_id for q in quotes))
    used = sorted((s for s in sources if s.chunk_id in order), key=lambda s: order.index(s.chunk_id))
    dropped = [s for s in sources if s.chunk_id not in order]
    notes = [] if quotes else ["no retrieved sentence shares a word with the question; try other words, or --k higher"]
    text = answer_text(quotes, used)
    verdict, shown = _guard(guardrails, text, question, sources)
    gid = (_record_extractive(store, question, text, used, quotes, mode, encoder, guarded=(shown, _entry(guardrails, verdict)))
           if record and quotes else None)
    return Answer(shown, used, gid, "", dropped, notes, EXTRACTIVE, quotes, verdict)


def _record_extractive(store, question, text, used, quotes, mode, encoder, guarded=(None, None)) -> int:
    import hashlib

    from genzoo.runs.manifest import config_hash, utc_now, versions
    from genzoo.store.records import ModelRecord
    from genzoo.tasks import rag_extractive as X

    space = getattr(encoder, "space", None)
    config = {"weights": X.WEIGHTS if space else X.KEYWORD_WEIGHTS, "relative": X.RELATIVE, "min_words": X.MIN_WORDS,
              "encoder": space}
    model = ModelRecord(name=EXTRACTIVE, family=EXTRACTIVE, variant=space or "keyword", config=config, config_sha256=config_hash(config))
    manifest = {"format": RAG_FORMAT, "answer": EXTRACTIVE, "question": question, "retrieval": mode, "scorer": config,
                "sources": [{"chunk_id": s.chunk_id, "where": s.where, "rank": i} for i, s in enumerate(used, 1)],
                "quotes": [{"chunk_id": q.source.chunk_id, "lines": [q.start_line, q.end_line], "score": round(q.score, 6)} for q in quotes],
                "versions": versions(), "created_at": utc_now(), "outputs": {"sha256": hashlib.sha256(text.encode()).hexdigest()}}
    shown, entry = guarded
    if entry is not None:  # the store keeps what the guardrails let through; the sha256 stays the answer's own
        manifest["guardrails"] = entry
    return record_answer(store, question, text if shown is None else shown, used, manifest=manifest, model=model)


def _record(store, model_path, model, question, prompt, answer, used, seed, options, mode, budget=None, guarded=(None, None)) -> int:
    from genzoo.runs.manifest import config_hash
    from genzoo.runs.manifest import text_manifest
    from genzoo.tasks.record import _model_record

    manifest = text_manifest(Path(model_path), model, question, answer, seed, options)
    manifest.update({"format": RAG_FORMAT, "input": prompt, "retrieval": mode, "budget": budget or {},
                     "sources": [{"chunk_id": s.chunk_id, "where": s.where, "rank": i} for i, s in enumerate(used, 1)]})
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else {}
    record = _model_record(Path(manifest["checkpoint"]), manifest["family"], config.get("variant", ""), config, config_hash(config))
    shown, entry = guarded
    if entry is not None:
        manifest["guardrails"] = entry
    return record_answer(store, question, answer if shown is None else shown, used, manifest=manifest, model=record, seed=seed)

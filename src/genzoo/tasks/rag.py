"""Answer a question from the documents indexed in the store: retrieve, prompt, generate, record.

``genzoo.store.rag`` indexes documents and retrieves chunks; this module holds the part that needs
a model: it puts the retrieved sources into a prompt that fits the model's context, generates with
a genzoo text model or a local Hugging Face folder, and hands the store plain data to record (the
manifest as a dict, the model as a ``ModelRecord``), with ``grounded`` links to the sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genzoo.core.errors import GenzooError
from genzoo.store.rag import Source, check_can_record, record_answer, retrieve

RAG_FORMAT = "genzoo.rag/1"


@dataclass
class Answer:
    text: str
    sources: list[Source]
    generation_id: int | None
    prompt: str


INSTRUCTION = "Answer from the sources; cite them as [1].\n\n"
MIN_SOURCE_TOKENS = 16  # a source cut shorter than this says too little to be worth its header


def build_prompt(question: str, sources: list[Source], count_tokens, budget: int) -> tuple[str, list[Source]]:
    """The prompt and the sources it holds: sources in rank order while they fit in ``budget``
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


def ask(store, question: str, model_path: str | Path, *, k: int = 4, mode: str = "hybrid", max_tokens: int = 128,
        temperature: float = 0.0, seed: int = 0, device: str = "cpu", record: bool = True, loaded=None) -> Answer:
    """Retrieve, generate with a genzoo text model or a local Hugging Face folder, record.
    ``loaded``: a (model, tokenizer) pair already loaded from ``model_path`` (benchmarks ask many)."""
    from genzoo.tasks.textgen import generate_text, load_text_model

    if record:  # refuse before the work, not after it
        check_can_record(store)
    model, tokenizer = loaded or load_text_model(model_path, device)
    sources = retrieve(store, question, k, mode=mode)
    context = int(model.config.context)
    budget = context - max_tokens
    if budget < 16:
        raise GenzooError(f"the model's context is {context} tokens; --max-tokens {max_tokens} leaves no room for a prompt")
    prompt, used = build_prompt(question, sources, lambda t: len(tokenizer.encode(t)), budget)
    options = {"max_tokens": max_tokens, "temperature": temperature}
    result = generate_text(model, tokenizer, [prompt], seed=seed, **options)[0]
    answer = result.text.strip()
    gid = _record(store, model_path, model, question, prompt, answer, used, seed, options, mode) if record else None
    return Answer(answer, used, gid, prompt)


def _record(store, model_path, model, question, prompt, answer, used, seed, options, mode) -> int:
    from genzoo.runs.manifest import config_hash
    from genzoo.runs.manifest import text_manifest
    from genzoo.tasks.record import _model_record

    manifest = text_manifest(Path(model_path), model, question, answer, seed, options)
    manifest.update({"format": RAG_FORMAT, "input": prompt, "retrieval": mode,
                     "sources": [{"chunk_id": s.chunk_id, "where": s.where, "rank": i} for i, s in enumerate(used, 1)]})
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else {}
    record = _model_record(Path(manifest["checkpoint"]), manifest["family"], config.get("variant", ""), config, config_hash(config))
    return record_answer(store, question, answer, used, manifest=manifest, model=record, seed=seed)

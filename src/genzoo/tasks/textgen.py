"""Text generation end to end: a text model and its tokenizer, the decoding strategies of
``genzoo.sampling.text``, constraints (``genzoo.sampling.constrained``) and the verifier loop
(``genzoo.sampling.verify``). What ``genzoo generate`` runs.

Models: a genzoo run or checkpoint folder of a text family (its ``tokenizer.json`` beside the
weights), or a local Hugging Face Llama / Mistral / Qwen2 folder (``config.json`` with a
``model_type``, ``*.safetensors``, ``tokenizer.json``), loaded into genzoo's own implementation.

Length: generation is not bounded by the model's context. As in nanoGPT's sample.py, the model
conditions on the last ``context`` tokens (``model_step``); a prompt longer than the context is
cropped the same way (its start is not seen), which is what a model trained on ``context``-token
windows can use anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from genzoo.core.errors import GenzooError
from genzoo.runs.load import hf_model_type

VERIFIERS = ("python",)


def is_hf_folder(path: str | Path) -> bool:
    return hf_model_type(path) is not None


def load_text_model(path: str | Path, device: str = "cpu"):
    """(model, tokenizer) from a genzoo run/checkpoint folder or a local Hugging Face folder."""
    from genzoo.runs.load import load

    return as_text_model(load(path, device), path)


def as_text_model(model, path: str | Path):
    """(model, tokenizer) when ``model`` continues text (a tokenizer and a KV cache), else a clear refusal."""
    if getattr(model, "tokenizer", None) is None or not hasattr(model, "new_cache"):
        raise GenzooError(f"{path} holds a {model.family} model, not a text model with a tokenizer; "
                          "generate needs a text family's run (genzoo train gpt --data pydocs) or a Hugging Face folder")
    return model.eval(), model.tokenizer


def model_step(model, max_len: int):
    """The step function the decoding loop drives: (ids, window) -> (last-position logits, window).

    Past the context the model sees the last ``context`` tokens only (nanoGPT's crop, prompt
    included), so generation goes on for as long as asked. While the sequence fits, the KV cache
    (``max_len`` slots: prompt + new tokens, not the whole context, which can be 100k+ tokens)
    makes each step one token; once the window slides, every step recomputes the window. Both
    position schemes need that for exact results: learned positions shift with the crop, and a
    rotary model's deeper keys were computed while attending to tokens the crop drops (a
    sliding KV cache would continue a different, out-of-training sequence). Hence the cached and
    uncached paths (``GPT.generate_tokens(use_cache=False)``) give the same tokens."""
    context = model.config.context

    def step(ids: torch.Tensor, window):
        ids = ids.to(model_device(model))
        if window is None:
            window = _Window(model.new_cache(max_len) if ids.shape[1] <= context else None, ids)
        else:
            window.tokens = torch.cat([window.tokens, ids], dim=1)[:, -context:]
            window.length += ids.shape[1]
        with torch.no_grad():
            if window.cache is not None and window.length <= context:
                return model(ids, cache=window.cache, last_only=True), window
            window.cache = None  # the window slides from here on: recompute it each step
            return model(window.tokens[:, -context:], last_only=True), window

    return step


class _Window:
    """What ``model_step`` carries between steps: the KV cache while the sequence fits the context,
    the last ``context`` tokens (to recompute the window once it slides) and the sequence's length."""

    __slots__ = ("cache", "tokens", "length")

    def __init__(self, cache, tokens: torch.Tensor):
        self.cache, self.tokens, self.length = cache, tokens, tokens.shape[1]


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def generate_text(model, tokenizer, prompts: list[str], *, max_tokens: int = 100, temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
                  stop: list[str] | None = None, seed: int = 0, regex: str | None = None,
                  json_schema: dict | str | None = None, grammar: str | None = None,
                  on_token: Callable[[int, int], None] | None = None):
    """One continuation per prompt (``genzoo.sampling.text.Generation``: ids, text, stop_reason)."""
    from genzoo.sampling.text import generate

    if max_tokens < 1:
        raise GenzooError(f"--max-tokens must be at least 1, got {max_tokens}")
    processor = None
    if regex is not None or json_schema is not None or grammar is not None:
        from genzoo.sampling.constrained import Constraint

        processor = Constraint(tokenizer, regex=regex, json_schema=json_schema, grammar=grammar,
                               special_ids=getattr(tokenizer, "special_ids", None)).as_logits_processor()
    else:
        processor = _never_special(tokenizer)
    encoded = [tokenizer.encode(p) for p in prompts]
    start = getattr(model.config, "bos_token_id", None)
    encoded = [ids or ([start] if start is not None else [tokenizer.eos_id]) for ids in encoded]  # an empty prompt starts a document
    eos = list(getattr(tokenizer, "stop_ids", None) or [tokenizer.eos_id])
    g = torch.Generator().manual_seed(seed)
    max_len = max(map(len, encoded)) + max_tokens
    return generate(model_step(model, max_len), encoded, max_new_tokens=max_tokens, eos_id=eos, stop=stop or (),
                    decode=visible_text(tokenizer), temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    repetition_penalty=repetition_penalty, generator=g, logits_processor=processor, on_token=on_token)


def _never_special(tokenizer):
    """For genzoo's own tokenizers, a logits processor that keeps control tokens (``<unk>``) from being
    sampled: they write no text, and a character tokenizer built from the training file never saw
    ``<unk>`` as a target, yet an undertrained model gives it mass. End-of-text stays allowed.
    Hugging Face folders are left as their library samples them (parity with transformers)."""
    if getattr(tokenizer, "kind", None) not in ("char", "bpe"):  # a Hugging Face model decodes as its library does
        return None
    stops = set(getattr(tokenizer, "stop_ids", None) or [tokenizer.eos_id])
    banned = sorted(set(getattr(tokenizer, "special_ids", None) or ()) - stops)
    if not banned:
        return None

    def processor(row: int, ids: list, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        logits[..., [b for b in banned if b < logits.shape[-1]]] = float("-inf")
        return logits

    return processor


def visible_text(tokenizer) -> Callable[[list[int]], str]:
    """Decoding for display: special tokens (a Hugging Face model's <s>, genzoo's <unk>) left out."""
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def generate_checked(model, tokenizer, prompt: str, verify: str, attempts: int, **options):
    """Verifier in the loop: draw continuations (seed, seed + 1, ...) until the prompt followed by
    the continuation passes ``verify`` (a prompt such as "def f(" is part of the program checked).
    The returned text is the whole checked text, prompt included."""
    from genzoo.sampling.verify import generate_verified, python_parses

    if verify not in VERIFIERS:
        raise GenzooError(f"unknown verifier {verify!r}; valid: {', '.join(VERIFIERS)}")
    seed = options.pop("seed", 0)

    def candidate(attempt: int) -> str:
        return prompt + generate_text(model, tokenizer, [prompt], seed=seed + attempt, **options)[0].text

    return generate_verified(candidate, python_parses, attempts)

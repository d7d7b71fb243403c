"""Decoding strategies for autoregressive text models, as pure functions.

Every filter takes a batch of next-token logits (B, V) and returns new
logits of the same shape, with removed tokens set to ``-inf`` (no in-place
changes). ``choose_next`` chains them and picks one token per row;
``generate`` runs the loop over a *step function* and never knows how the
model is built:

    step(ids: LongTensor (B, t), cache) -> (logits (B, t, V), cache)

``cache`` is the model's own KV-cache object (``None`` on the first call):
the first call gets the whole prompt, each later call only the token just
chosen. A model adapts itself into that one function, as a diffusion model
adapts itself into a denoiser (``genzoo.sampling.diffusion``).

Order of the logits pipeline, per row: ``logits_processor`` (for example the
mask of constrained decoding) -> repetition penalty -> temperature -> top-k
-> top-p -> min-p -> sample (or argmax when temperature is 0). A token masked
to ``-inf`` stays masked through every later stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from genzoo.core.errors import GenzooError

StepFn = Callable[[torch.Tensor, object], "tuple[torch.Tensor, object]"]
LogitsProcessor = Callable[[int, list, torch.Tensor], torch.Tensor]
STOP_REASONS = ("eos", "stop", "length")


# ----------------------------------------------------------------------------- options


def check_options(
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    max_new_tokens: int | None = None,
) -> None:
    """Raise ``GenzooError`` naming the first bad sampling option and its valid range."""
    def bad(name, value, valid):
        raise GenzooError(f"{name} must be {valid}, got {value!r}")

    def real(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if not real(temperature) or temperature < 0:
        bad("temperature", temperature, "a number >= 0 (0 means greedy)")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        bad("top_k", top_k, "an integer >= 0 (0 turns it off)")
    if not real(top_p) or not 0 < top_p <= 1:
        bad("top_p", top_p, "in (0, 1] (1 turns it off)")
    if not real(min_p) or not 0 <= min_p <= 1:
        bad("min_p", min_p, "in [0, 1] (0 turns it off)")
    if not real(repetition_penalty) or repetition_penalty <= 0:
        bad("repetition_penalty", repetition_penalty, "a number > 0 (1 turns it off; > 1 discourages repeats)")
    if max_new_tokens is not None and (
        not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0
    ):
        bad("max_new_tokens", max_new_tokens, "an integer >= 0")


def _rows(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 2:
        raise GenzooError(f"expected next-token logits of shape (batch, vocab), got shape {tuple(logits.shape)}")
    return logits


# ----------------------------------------------------------------------------- filters


def apply_repetition_penalty(logits: torch.Tensor, previous_ids, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): every token already seen in its row is made less likely.

    A seen token's positive logit is divided by ``penalty``, a negative one
    multiplied by it (so both move down for ``penalty > 1``); each token is
    penalised once, however often it occurred. ``previous_ids``: a (B, t)
    LongTensor or a list of B id lists (rows may differ in length).
    """
    logits = _rows(logits)
    check_options(repetition_penalty=penalty)
    if penalty == 1.0:
        return logits
    out = logits.clone()
    if isinstance(previous_ids, torch.Tensor):
        previous_ids = previous_ids.tolist()
    if len(previous_ids) != len(logits):
        raise GenzooError(f"previous_ids has {len(previous_ids)} rows but logits have {len(logits)}")
    for r, ids in enumerate(previous_ids):
        if len(ids) == 0:
            continue
        idx = torch.tensor(sorted(set(int(i) for i in ids)), dtype=torch.long, device=logits.device)
        seen = out[r, idx]
        out[r, idx] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return out


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide the logits by ``temperature`` (> 0; greedy decoding is ``choose_next``'s temperature 0)."""
    logits = _rows(logits)
    check_options(temperature=temperature)
    if temperature == 0:
        raise GenzooError("apply_temperature needs temperature > 0; temperature 0 (greedy) is handled by choose_next")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (``k = 0`` or ``k >= V``: keep all).

    Exactly ``k`` survive: among tied values at the boundary the lower ids win.
    """
    logits = _rows(logits)
    check_options(top_k=k)
    if k == 0 or k >= logits.shape[-1]:
        return logits
    keep = torch.topk(logits, k, dim=-1, sorted=False).indices
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, keep, logits.gather(-1, keep))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set of most likely tokens whose mass is >= p.

    A token is kept when the mass of the tokens ranked above it is still
    below ``p``, so the top token always survives. ``p = 1`` keeps all.
    """
    logits = _rows(logits)
    check_options(top_p=p)
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Min-p sampling (Nguyen et al. 2024): keep tokens with ``p >= min_p * p_max`` (``min_p = 0`` keeps all)."""
    logits = _rows(logits)
    check_options(min_p=min_p)
    if min_p == 0.0:
        return logits
    # p_i / p_max = exp(l_i - l_max): compare in log space, no softmax needed.
    top = logits.max(dim=-1, keepdim=True).values
    drop = (logits - top) < math.log(min_p)
    return logits.masked_fill(drop, float("-inf"))


def choose_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """One token id per row, (B,) long, from next-token logits (B, V).

    ``temperature = 0`` is greedy (argmax; the filters cannot change it).
    Otherwise temperature, top-k, top-p, then min-p are applied and a token is
    sampled from the softmax with ``generator``: one ``torch.Generator`` for
    the whole batch or a sequence of one per row (``generate`` uses one per
    row, so a row's text does not depend on the rows beside it). A generator
    on another device than the logits is honoured (the probabilities move
    to it), so a CPU generator gives the same tokens on any device.
    """
    logits = _rows(logits)
    check_options(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    logits = logits.float()
    if bool(torch.isneginf(logits).all(dim=-1).any()) or bool(torch.isnan(logits).any()):
        raise GenzooError("every token of a row is masked (or the logits hold NaN): nothing can be sampled")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = min_p_filter(top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p), min_p)
    probs = torch.softmax(logits, dim=-1)
    if generator is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    if isinstance(generator, torch.Generator):
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
    gens = list(generator)
    if len(gens) != len(probs):
        raise GenzooError(f"got {len(gens)} generators for {len(probs)} rows")
    out = []
    for row, g in zip(probs, gens):
        out.append(int(torch.multinomial(row.to(g.device) if g is not None else row, 1, generator=g)))
    return torch.tensor(out, dtype=torch.long, device=probs.device)


# ----------------------------------------------------------------------------- the loop


@dataclass
class Generation:
    """One row's result.

    ``ids``: the generated tokens, prompt excluded, eos excluded. A matched
    stop *token sequence* is cut from ``ids``; a stop *string* is cut from
    ``text`` only (a token may straddle its start), ``ids`` keeping the tokens
    up to the one that completed it.
    ``text``: the decoded generation (``None`` when no ``decode`` was given).
    ``stop_reason``: "eos", "stop" (a stop string or token sequence) or "length".
    """

    ids: list[int]
    stop_reason: str
    text: str | None = None


class _Row:
    __slots__ = ("index", "prompt", "ids", "done", "reason", "text", "search_from", "generator")

    def __init__(self, index, prompt, generator):
        self.index, self.prompt, self.generator = index, prompt, generator
        self.ids: list[int] = []
        self.done, self.reason, self.text, self.search_from = False, None, None, 0


@torch.no_grad()
def generate(
    step: StepFn,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_id: int | Sequence[int] | None = None,
    stop: Sequence[str] | str = (),
    stop_token_seqs: Sequence[Sequence[int]] = (),
    decode: Callable[[list[int]], str] | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
    logits_processor: LogitsProcessor | None = None,
    on_token: Callable[[int, int], None] | None = None,
    batch: bool = True,
    device: torch.device | str | None = None,
) -> list[Generation]:
    """Continue each prompt (a list of token ids) until eos, a stop string/sequence or ``max_new_tokens``.

    Batching. The step function owns its cache and takes no attention mask,
    so rows of different lengths cannot share one padded batch. Prompts of
    equal length are grouped and run together (one prefill, then one decode
    step per token for the whole group); each group runs in turn. A row that
    has finished keeps being fed (its tokens are discarded) until its whole
    group is done, since an opaque cache cannot drop rows: a group costs as
    many steps as its longest row. Many prompts of many lengths therefore
    cost about one B=1 generation per distinct length. ``batch=False`` runs
    every row alone (for step functions that only take B=1).

    Randomness. One generator per row is seeded from ``generator`` (or from
    torch's global RNG) in row order before anything runs, so the same seed
    gives the same text, and a row's text does not depend on how rows are
    grouped or when the others stop. Temperature 0 draws nothing.

    Stopping, per row: ``eos_id`` (one id or several; not included in
    ``ids``), ``stop_token_seqs`` (cut from ``ids``), ``stop`` strings
    (searched in the decoded tail after each token, so they need ``decode``;
    the text is cut at the first match), or the token limit.

    Hooks. ``logits_processor(row, generated_ids, logits_row) -> logits_row``
    is called on every live row's (V,) float logits before the repetition
    penalty and the filters (constrained decoding masks tokens here);
    ``on_token(row, token_id)`` is called for every generated token but eos,
    in order, for streaming (the tokens of a stop string or stop sequence are
    streamed before the match is known).
    The repetition penalty covers the prompt and the generated tokens.
    ``device``: where the id tensors handed to ``step`` are made (default
    CPU; a step function for a GPU model may equally move them itself).
    A step function may return (B, V) logits instead of (B, t, V).
    """
    check_options(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
        repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens,
    )
    stops = [stop] if isinstance(stop, str) else list(stop)
    if any(not isinstance(s, str) or not s for s in stops):
        raise GenzooError(f"stop strings must be non-empty strings, got {stops!r}")
    if stops and decode is None:
        raise GenzooError("stop strings need decode= (the tokenizer's decode) to read the generated text")
    seqs = [list(map(int, s)) for s in stop_token_seqs]
    if any(not s for s in seqs):
        raise GenzooError("stop_token_seqs must not contain an empty sequence")
    eos = set() if eos_id is None else ({int(eos_id)} if isinstance(eos_id, int) else {int(e) for e in eos_id})
    prompts = [[int(t) for t in p] for p in prompts]
    for i, p in enumerate(prompts):
        if not p:
            raise GenzooError(f"prompt {i} is empty: start it with at least one token (a BOS or eos id)")
    device = torch.device(device) if device is not None else torch.device("cpu")

    if temperature == 0 or not prompts:
        gens = [None] * len(prompts)
    else:
        seeds = torch.randint(0, 2**62, (len(prompts),), generator=generator).tolist()
        gens = [torch.Generator().manual_seed(s) for s in seeds]
    rows = [_Row(i, p, g) for i, (p, g) in enumerate(zip(prompts, gens))]

    if batch:
        groups: dict[int, list[_Row]] = {}
        for r in rows:
            groups.setdefault(len(r.prompt), []).append(r)
        group_list = list(groups.values())
    else:
        group_list = [[r] for r in rows]

    max_stop = max((len(s) for s in stops), default=0)
    sample_opts = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)

    def finish(r: _Row, reason: str) -> None:
        r.done, r.reason = True, reason

    def accept(r: _Row, tok: int) -> None:
        if tok in eos:
            return finish(r, "eos")
        r.ids.append(tok)
        if on_token is not None:
            on_token(r.index, tok)
        for s in seqs:
            if len(r.ids) >= len(s) and r.ids[-len(s):] == s:
                del r.ids[-len(s):]
                return finish(r, "stop")
        if stops:
            text = decode(r.ids)
            start = max(0, r.search_from - max_stop)
            hits = [(k, s) for s in stops if (k := text.find(s, start)) >= 0]
            if hits:
                r.text = text[: min(k for k, _ in hits)]
                return finish(r, "stop")
            r.search_from = len(text)
        if len(r.ids) >= max_new_tokens:
            finish(r, "length")

    for group in group_list:
        if max_new_tokens == 0:
            for r in group:
                finish(r, "length")
            continue
        ids = torch.tensor([r.prompt for r in group], dtype=torch.long, device=device)
        logits, cache = step(ids, None)
        while True:
            live = [j for j, r in enumerate(group) if not r.done]
            if logits.dim() not in (2, 3):
                raise GenzooError(
                    f"the step function must return logits (batch, t, vocab), got shape {tuple(logits.shape)}"
                )
            last = (logits[:, -1, :] if logits.dim() == 3 else logits).float()
            if last.shape[0] != len(group):
                raise GenzooError(f"the step function returned {last.shape[0]} rows of logits for {len(group)} prompts")
            rows_logits = last[live]
            if logits_processor is not None:
                rows_logits = torch.stack(
                    [logits_processor(group[j].index, list(group[j].ids), rows_logits[n]) for n, j in enumerate(live)]
                )
            if repetition_penalty != 1.0:
                rows_logits = apply_repetition_penalty(
                    rows_logits, [group[j].prompt + group[j].ids for j in live], repetition_penalty
                )
            chosen = choose_next(
                rows_logits, generator=None if temperature == 0 else [group[j].generator for j in live], **sample_opts
            ).tolist()
            feed = [r.ids[-1] if r.ids else r.prompt[-1] for r in group]
            for j, tok in zip(live, chosen):
                accept(group[j], tok)
                feed[j] = tok
            if all(r.done for r in group):
                break
            logits, cache = step(torch.tensor(feed, dtype=torch.long, device=device).unsqueeze(1), cache)

    out = []
    for r in rows:
        text = r.text
        if text is None and decode is not None:
            text = decode(r.ids)
        out.append(Generation(ids=r.ids, stop_reason=r.reason, text=text))
    return out

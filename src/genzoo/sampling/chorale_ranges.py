"""Chorale sampling that keeps every voice in its range by construction.

The layer order puts sampling above data: the pattern (``genzoo.data.chorales.range_regex``) is the
data's, the masking (``genzoo.sampling.constrained``, llguidance) is the sampler's.
"""

from __future__ import annotations

import torch

from genzoo.data import chorales
from genzoo.sampling.constrained import Constraint


def in_range_sampler(tokenizer, draw, ranges: dict | None = None):
    """A ``sample_fn`` for ``GPT.generate_tokens`` that can only write in-range chorales.

    Each row has an llguidance matcher of ``range_regex`` (``genzoo.sampling.constrained``): before
    every token the tokens that break the pattern get -inf, then ``draw`` (the unconstrained rule, e.g.
    softmax(logits / temperature)) picks from what is left. An eos (allowed only between whole steps) starts a new chorale, so the
    row's matcher starts over, as unconstrained samples run on into the next document. Needs rows
    that all start with one prompt token (what ``GPT.sample`` gives)."""
    constraint = Constraint(tokenizer, regex=chorales.range_regex(ranges), special_ids=getattr(tokenizer, "special_ids", None))
    eos = int(tokenizer.eos_id)
    matchers: list = []
    seen: list[int] = []

    def sample_fn(logits, history, generator=None):
        if not matchers:
            matchers.extend(constraint.matcher() for _ in range(history.shape[0]))
            seen.extend([history.shape[1]] * history.shape[0])  # the prompt is not part of the chorale
        mask = torch.zeros(logits.shape, dtype=torch.bool)
        for i, m in enumerate(matchers):
            for t in history[i, seen[i]:].tolist():
                if t == eos:
                    m = matchers[i] = constraint.matcher()
                else:
                    m.consume([t])
            seen[i] = history.shape[1]
            mask[i] = m.allowed(logits.shape[-1])
        return draw(logits.masked_fill(~mask.to(logits.device), float("-inf")), history, generator)

    return sample_fn

"""One dropout for every family, fed from the training batch's random stream.

The Trainer (and ``validation_loss``) runs each step inside ``noise_source(batch.rng)``;
every ``BatchDropout`` module and ``batch_dropout`` call draws its mask from that
``BatchRandom``. Masks are therefore a function of (seed, step, example): a run
split over 2 processes, resumed from a checkpoint or accumulated over
micro-batches sees exactly the masks of one uninterrupted process, with no
RNG state to save. Outside a noise source (a user's own loop) masks come from
torch's global generator, like ``nn.Dropout``.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

from genzoo.core.errors import GenzooError

_NOISE: ContextVar = ContextVar("genzoo_batch_noise", default=None)


@contextmanager
def noise_source(rng):
    """Draw every dropout mask inside the block from ``rng`` (a ``BatchRandom``; None: the global RNG)."""
    token = _NOISE.set(rng)
    try:
        yield rng
    finally:
        _NOISE.reset(token)


def current_noise():
    return _NOISE.get()


def batch_dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout of ``h`` (batch first) with a mask from the current noise source."""
    if not training or p == 0:
        return h
    rng = _NOISE.get()
    u = rng.rand_like(h) if rng is not None else torch.rand_like(h)
    return h * (u >= p) / (1 - p)


class BatchDropout(nn.Module):
    """``nn.Dropout`` whose masks come from the current noise source (see the module doc)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise GenzooError(f"dropout must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

"""Summaries of per-example NLL (``summarize_nll``, ``per_example_nll``).

The units (nats, bits/dim) and the dequantization bound live in the leaf module
``genzoo.core.units`` (models use them too); they are re-exported here.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from genzoo.core.errors import GenzooError
from genzoo.core.units import LN2, bin_log_volume, bits_per_dim_to_nats, discrete_log_prob_bound, nats_to_bits_per_dim  # noqa: F401


def summarize_nll(nll_nats, dims: int) -> dict[str, float]:
    """Mean per-example NLL in nats and bits/dim, with the standard error of the mean (nats)."""
    nll = torch.as_tensor(nll_nats).detach().double().flatten().cpu()
    if len(nll) == 0:
        raise GenzooError("no NLL values to summarise")
    if not torch.isfinite(nll).all():
        bad = int((~torch.isfinite(nll)).sum())
        raise GenzooError(f"{bad} of {len(nll)} per-example NLL values are NaN or infinite; check the model's log_prob")
    mean = nll.mean().item()
    std_err = (nll.std(unbiased=True) / math.sqrt(len(nll))).item() if len(nll) > 1 else float("nan")
    return {
        "nats_per_example": mean,
        "bits_per_dim": nats_to_bits_per_dim(mean, dims),
        "std_err": std_err,
        "std_err_bits_per_dim": nats_to_bits_per_dim(std_err, dims),
        "n": len(nll),
    }


@torch.no_grad()
def per_example_nll(model, x: torch.Tensor, *, batch_size: int = 256, options: dict | None = None,
                    progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """-model.log_prob(x) in chunks, on the model's device, as a (N,) float64 CPU tensor."""
    device = model_device(model)
    out = []
    for i in range(0, len(x), batch_size):
        chunk = x[i : i + batch_size].to(device)
        lp = model.log_prob(chunk, **(options or {}))
        lp = torch.as_tensor(lp).detach().double().flatten().cpu()
        if len(lp) != len(chunk):
            raise GenzooError(f"{type(model).__name__}.log_prob returned {len(lp)} values for {len(chunk)} examples; "
                              "it must return one log-likelihood per example")
        out.append(-lp)
        if progress:
            progress(min(i + batch_size, len(x)), len(x))
    return torch.cat(out)


def model_device(model) -> torch.device:
    """Where a model's parameters live (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")

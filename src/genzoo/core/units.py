"""Likelihood units and the dequantization bound (a leaf module: models and eval both use it).

Likelihood units, the dequantization bound, and summaries of per-example NLL.

Units. genzoo reports the negative log-likelihood of the *discrete* data in
nats per example (summed over the example's D dimensions) and in bits per
dimension: bits/dim = nats / (D ln 2).

Dequantization. A continuous model (flow, VAE with a continuous decoder,
diffusion) has a density p(y) over y in [-1, 1]^D, not a probability of the
integer levels k in 0..L-1. Uniform dequantization maps level k to

    y = (k + u) / L * 2 - 1,   u ~ U[0, 1)^D,

so each level owns a whole bin of width 2/L and the bins tile [-1, 1]. Then

    P(k) = integral over k's bin of p(y) dy = (2/L)^D E_u[p(y)]
    log P(k) >= E_u[log p(y)] + D log(2/L)          (Jensen)

which is ``discrete_log_prob_bound``: it is a valid lower bound on the
discrete log-likelihood (an upper bound on the NLL) only if (a) the noise
fills the whole bin (u in [0, 1), not e.g. [0, 0.5)), and (b) p is a density
in the y = [-1, 1] coordinates, i.e. the log-determinant of any rescaling
onto those coordinates is included. The check: a density uniform on
[-1, 1]^D gives log p = -D log 2 and the bound gives exactly -D log L, the
log-probability of the uniform discrete distribution.

Report it with more than one noise draw (or many test examples): a single
draw of u per example is an unbiased estimate of E_u[log p(y)], but the
``std_err`` from ``summarize_nll`` then includes the noise.
"""

from __future__ import annotations

import math

from genzoo.core.errors import GenzooError

LN2 = math.log(2.0)


def nats_to_bits_per_dim(nats_per_example, dims: int):
    """Nats per example -> bits per dimension (works on floats and tensors)."""
    return nats_per_example / (dims * LN2)


def bits_per_dim_to_nats(bits_per_dim, dims: int):
    """Bits per dimension -> nats per example."""
    return bits_per_dim * dims * LN2


def bin_log_volume(dims: int, levels: int, low: float = -1.0, high: float = 1.0) -> float:
    """log of the volume of one level's bin when L levels tile [low, high]^D: D log((high-low)/L)."""
    if levels < 1 or dims < 1:
        raise GenzooError(f"need levels >= 1 and dims >= 1, got levels={levels}, dims={dims}")
    return dims * math.log((high - low) / levels)


def discrete_log_prob_bound(log_density, dims: int, levels: int, low: float = -1.0, high: float = 1.0):
    """Lower bound on log P(k) from log p(y) at uniformly dequantized y (see module doc).

    ``log_density`` is log p(y) per example in the [low, high] coordinates
    (default [-1, 1]); average it over noise draws before or after calling:
    the correction is a constant, D log((high - low) / L).
    """
    return log_density + bin_log_volume(dims, levels, low, high)

"""Stochastic gradient Langevin dynamics (SGLD) over an energy function.

One step moves every chain downhill on the energy and adds Gaussian noise,

    x <- x - step_size * clip(grad_x E(x)) + noise * eps,        eps ~ N(0, I).

With ``noise = sqrt(2 * step_size)`` (the default) this is the unadjusted
Langevin algorithm, whose chains approach p(x) proportional to exp(-E(x)) as
the step size shrinks and the chains grow long. Energy-based models trained
by short-run contrastive divergence usually take a larger step and far less
noise (JEM: step 1, noise 0.01); their chains are then a learned sampler
rather than samples of exp(-E), which is what they were trained to be.

The sampler is a pure function: the energy is any callable from (N, ...)
inputs to (N,) energies, and every random number comes from ``noise_like``
(a model passes its batch's ``BatchRandom``, a user a seeded generator), so a
chain is reproducible and splits across processes exactly.

Stability tools inside the sampler: ``grad_clip`` caps each chain's gradient
norm per step (a sharp or exploding energy then moves a chain at most
``step_size * grad_clip`` per step instead of throwing it to infinity), and
``bounds`` clamps chains to the data's box.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Energy = Callable[[torch.Tensor], torch.Tensor]
NoiseLike = Callable[[torch.Tensor], torch.Tensor]


def langevin_noise(step_size: float) -> float:
    """The noise std that makes SGLD target exp(-E) exactly in the small-step limit."""
    return math.sqrt(2.0 * step_size)


def clip_per_chain(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each chain's gradient (one row) down to at most ``max_norm`` in L2 norm."""
    norms = grad.flatten(1).norm(dim=1).clamp(min=1e-12)
    scale = (max_norm / norms).clamp(max=1.0)
    return grad * scale.view(-1, *[1] * (grad.ndim - 1))


def energy_grad(energy: Energy, x: torch.Tensor) -> torch.Tensor:
    """d(sum of energies)/dx; the chains' energies are independent, so row i is grad E(x_i).
    Only x receives the gradient: the model's parameters are left untouched."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x)
    return grad


def langevin(
    energy: Energy,
    x0: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    noise: float | None = None,
    grad_clip: float | None = None,
    bounds: tuple[float, float] | None = None,
    noise_like: NoiseLike | None = None,
    record_every: int = 0,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``steps`` SGLD steps from ``x0`` (detached); returns the final chains.

    ``noise``: the std of the added noise (None: ``sqrt(2 * step_size)``, true Langevin).
    ``grad_clip``: cap on each chain's gradient norm per step (None: no cap).
    ``bounds``: (low, high) to clamp every coordinate after each step (None: unbounded).
    ``noise_like``: draws N(0, I) noise shaped like its argument (default ``torch.randn_like``,
    the global RNG: pass a seeded source for reproducible chains).
    ``record_every`` > 0 also returns the chains every that many steps (the start included), to
    picture a long run.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if step_size <= 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    noise = langevin_noise(step_size) if noise is None else noise
    if noise < 0 or (grad_clip is not None and grad_clip <= 0):
        raise ValueError(f"noise must be >= 0 and grad_clip positive, got {noise} and {grad_clip}")
    noise_like = noise_like or torch.randn_like
    x = x0.detach().clone()
    trace = [x.clone()] if record_every else []
    for i in range(steps):
        grad = energy_grad(energy, x)
        if grad_clip is not None:
            grad = clip_per_chain(grad, grad_clip)
        x = x - step_size * grad
        if noise:
            x = x + noise * noise_like(x)
        if bounds is not None:
            x = x.clamp(*bounds)
        if record_every and (i + 1) % record_every == 0:
            trace.append(x.clone())
    return (x, trace) if record_every else x


def short_run(energy: Energy, init: torch.Tensor, *, steps: int = 20, step_size: float = 1.0, noise: float = 0.01,
              **options) -> torch.Tensor:
    """A short chain from noise with a large step and little noise: the sampler a short-run EBM
    (Nijkamp et al. 2019) is trained to be. Defaults: JEM's 20 steps of size 1, noise 0.01."""
    return langevin(energy, init, steps=steps, step_size=step_size, noise=noise, **options)


def long_run(energy: Energy, init: torch.Tensor, *, steps: int = 1000, step_size: float = 0.01,
             noise: float | None = None, **options) -> torch.Tensor:
    """A long chain with a small step and Langevin noise (default sqrt(2 * step_size)): towards
    samples of exp(-E) itself, which shows what the energy learned beyond the short-run sampler."""
    return langevin(energy, init, steps=steps, step_size=step_size, noise=noise, **options)


__all__ = ["clip_per_chain", "energy_grad", "langevin", "langevin_noise", "long_run", "short_run"]

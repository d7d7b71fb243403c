"""Discrete-time noise schedules of the forward process q(x_t | x_0) = N(a_t x_0, s_t^2 I).

Index convention: t = 0 .. T-1 are the T noisy steps (Ho et al.'s x_1 .. x_T);
the data itself sits "before" step 0, where a = 1 and s = 0. ``alphas_cumprod``
is Ho et al.'s alpha-bar, so a_t = sqrt(alpha-bar_t), s_t = sqrt(1 - alpha-bar_t)
and the log signal-to-noise ratio is lambda_t = log(a_t / s_t).

Everything is computed in float64: the variational bound needs 1 - alpha-bar
near t = 0, where float32 loses most of its digits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEDULES = ("cosine", "linear")


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): alpha-bar(t) = cos^2(pi/2 (t/T + s)/(1 + s)), betas clipped at 0.999."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020): betas linear from 1e-4 to 0.02 at T=1000, rescaled so other T keep the same endpoints' SNR."""
    scale = 1000 / timesteps
    return torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), timesteps, dtype=torch.float64)


class NoiseSchedule(nn.Module):
    """The betas and everything derived from them, as float64 buffers that follow the model's device.

    The buffers are not saved with the weights (``persistent=False``): they are
    recomputed from the config, so a checkpoint holds only learned numbers.
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        super().__init__()
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        self.name = name
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        self._buffer("betas", betas)
        self._buffer("alphas_cumprod", alphas_cumprod)
        self._buffer("alphas_cumprod_prev", prev)  # alpha-bar of the step before (1 for t = 0: the data)
        self._buffer("sqrt_alphas_cumprod", alphas_cumprod.sqrt())  # a_t
        self._buffer("sqrt_one_minus_alphas_cumprod", (1 - alphas_cumprod).sqrt())  # s_t
        self._buffer("log_snr", 0.5 * (alphas_cumprod.log() - torch.log1p(-alphas_cumprod)))  # lambda_t
        # q(x_{t-1} | x_t, x_0) = N(coef_x0 * x_0 + coef_xt * x_t, posterior_variance)
        self._buffer("posterior_variance", betas * (1 - prev) / (1 - alphas_cumprod))
        self._buffer("posterior_coef_x0", betas * prev.sqrt() / (1 - alphas_cumprod))
        self._buffer("posterior_coef_xt", (1 - betas).sqrt() * (1 - prev) / (1 - alphas_cumprod))

    def _buffer(self, name: str, value: torch.Tensor) -> None:
        self.register_buffer(name, value, persistent=False)

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    def gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped to broadcast against ``like`` (n, ...), in ``like``'s dtype."""
        out = values.to(t.device)[t].to(like.dtype)
        return out.view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """A draw of x_t ~ q(x_t | x_0) given the standard normal ``noise``."""
        return self.gather(self.sqrt_alphas_cumprod, t, x0) * x0 + self.gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def extra_repr(self) -> str:
        return f"{self.name}, T={self.timesteps}"


def make_schedule(name: str, timesteps: int = 1000) -> NoiseSchedule:
    """A schedule by name: 'cosine' or 'linear'."""
    if name == "cosine":
        return NoiseSchedule(cosine_betas(timesteps), name)
    if name == "linear":
        return NoiseSchedule(linear_betas(timesteps), name)
    raise ValueError(f"unknown noise schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")

"""Diffusion samplers: DDPM ancestral, DDIM and DPM-Solver++(2M).

Every sampler takes a *denoiser*, a function ``(x_t, t) -> predicted x_0``
with ``t`` a (n,) long tensor of step indices, plus the ``NoiseSchedule`` and
the starting noise x_{T-1} ~ N(0, I). Models adapt their own output (eps, v,
classifier-free guidance, ...) into that one function, so samplers never
know how a network was parameterized.

Each sampler visits ``steps`` indices from T-1 down to 0 (one network call
each; evenly spaced in t, or in log-SNR for DPM-Solver++) and returns the x_0
predicted at the last one, t = 0.
``clip`` clamps every x_0 prediction to [-clip, clip] (use 1 for images in
[-1, 1]); for eps-prediction it also stops the blow-up of x_0 = (x - s eps) / a
where a is tiny.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from genzoo.sampling.schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sampling_timesteps(schedule: NoiseSchedule | int, steps: int, spacing: str = "time") -> list[int]:
    """``steps`` distinct step indices from T-1 down to 0 (both ends included).

    ``spacing="time"`` spaces them evenly in t; ``"logsnr"`` evenly in
    lambda = log(a/s), which suits DPM-Solver on pixel data (Lu et al. 2022):
    with the cosine schedule, time-uniform steps make the first and last
    jumps in lambda several times larger than the rest.
    """
    timesteps = schedule if isinstance(schedule, int) else schedule.timesteps
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must lie in 1..{timesteps} (the schedule's length), got {steps}")
    if steps == 1:
        return [timesteps - 1]
    if spacing == "time":
        return torch.linspace(timesteps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    if spacing != "logsnr" or isinstance(schedule, int):
        raise ValueError(f"unknown spacing {spacing!r} (valid: time, logsnr; logsnr needs a NoiseSchedule)")
    lam = schedule.log_snr.cpu()  # decreasing in t
    targets = torch.linspace(float(lam[-1]), float(lam[0]), steps, dtype=torch.float64)
    ts = [int((lam - v).abs().argmin()) for v in targets]
    # Where lambda moves fast per index the nearest indices can collide: push them apart, keeping ends.
    for i in range(steps - 2, -1, -1):
        ts[i] = max(ts[i], ts[i + 1] + 1)
    ts[0] = timesteps - 1
    for i in range(1, steps):
        ts[i] = min(ts[i], ts[i - 1] - 1)
    return ts


def _alpha_bar(schedule: NoiseSchedule, t: int) -> float:
    """alpha-bar at index t, with index -1 meaning the data itself (alpha-bar = 1)."""
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def _predict_x0(denoise: Denoiser, x: torch.Tensor, t: int, clip: float | None) -> torch.Tensor:
    x0 = denoise(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
    return x0.clamp(-clip, clip) if clip is not None else x0


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # Draw on the generator's device, so a CPU generator gives the same noise whatever device x is on.
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _pairs(schedule: NoiseSchedule, steps: int, spacing: str = "time") -> list[tuple[int, int]]:
    ts = sampling_timesteps(schedule, steps, spacing)
    return list(zip(ts, ts[1:] + [-1]))


@torch.no_grad()
def ddpm_sample(
    denoise: Denoiser,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    *,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    clip: float | None = None,
    spacing: str = "time",
) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020): x_s ~ q(x_s | x_t, x_0 = prediction), for t > s.

    With ``steps < T`` the same posterior is taken between strided steps
    (the "respacing" of Nichol & Dhariwal 2021). The reverse variance is the
    true posterior's (beta-tilde).
    """
    x = noise
    for t, s in _pairs(schedule, steps or schedule.timesteps, spacing):
        x0 = _predict_x0(denoise, x, t, clip)
        if s < 0:
            return x0  # the mean of p(x_0 | x_1): no noise on the final step
        ab_t, ab_s = _alpha_bar(schedule, t), _alpha_bar(schedule, s)
        beta = 1 - ab_t / ab_s  # the effective beta of the jump t -> s
        coef_x0 = math.sqrt(ab_s) * beta / (1 - ab_t)
        coef_xt = math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)
        variance = beta * (1 - ab_s) / (1 - ab_t)
        x = coef_x0 * x0 + coef_xt * x + math.sqrt(variance) * _randn_like(x, generator)
    return x


@torch.no_grad()
def ddim_sample(
    denoise: Denoiser,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip: float | None = None,
    spacing: str = "time",
) -> torch.Tensor:
    """DDIM (Song et al. 2021). ``eta=0``: deterministic; ``eta=1``: the same process as ``ddpm_sample``."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    x = noise
    for t, s in _pairs(schedule, steps, spacing):
        x0 = _predict_x0(denoise, x, t, clip)
        if s < 0:
            return x0
        ab_t, ab_s = _alpha_bar(schedule, t), _alpha_bar(schedule, s)
        eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)  # the noise implied by the (clipped) x0
        sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
        x = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _randn_like(x, generator)
    return x


@torch.no_grad()
def dpmpp_2m_sample(
    denoise: Denoiser,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    *,
    steps: int = 20,
    clip: float | None = None,
    spacing: str = "logsnr",
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): second-order multistep solver of the probability-flow ODE.

    Works in the data-prediction form and in lambda = log(a/s): from t to s
    with h = lambda_s - lambda_t,
        x_s = (s_s / s_t) x_t - a_s (e^{-h} - 1) D,
    where D = x0_t for the first step and otherwise the linear extrapolation
    D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev, with r = h_prev / h.
    Steps are evenly spaced in lambda by default (``spacing``).
    """
    x = noise
    x0_prev, h_prev = None, None
    for t, s in _pairs(schedule, steps, spacing):
        x0 = _predict_x0(denoise, x, t, clip)
        if s < 0:
            return x0
        lam_t, lam_s = float(schedule.log_snr[t]), float(schedule.log_snr[s])
        h = lam_s - lam_t
        if x0_prev is None:
            d = x0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        sigma_ratio = math.sqrt((1 - _alpha_bar(schedule, s)) / (1 - _alpha_bar(schedule, t)))
        x = sigma_ratio * x - math.sqrt(_alpha_bar(schedule, s)) * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": ddpm_sample,
    "ddim": ddim_sample,
    "dpmpp2m": dpmpp_2m_sample,
}

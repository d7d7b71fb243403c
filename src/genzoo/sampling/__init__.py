"""Samplers kept apart from models: diffusion solvers (and, later, decoding strategies)."""

from genzoo.sampling.diffusion import SAMPLERS, ddim_sample, ddpm_sample, dpmpp_2m_sample, sampling_timesteps  # noqa: F401
from genzoo.sampling.schedules import NoiseSchedule, cosine_betas, linear_betas, make_schedule  # noqa: F401

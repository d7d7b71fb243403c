"""Noise schedules and diffusion samplers, checked against a case with a known answer.

For data x_0 ~ N(mu, sigma^2) the ideal denoiser is known in closed form,
E[x_0 | x_t] = mu + a sigma^2 / (a^2 sigma^2 + s^2) (x_t - a mu), so a correct
sampler driven by it must reproduce N(mu, sigma^2). The deterministic
samplers are then affine maps of the starting noise: feeding the noise values
0 and 1 reads off their exact output mean and standard deviation, with no
Monte Carlo error.
"""

import math

import pytest
import torch

from genzoo.sampling.diffusion import SAMPLERS, ddim_sample, ddpm_sample, dpmpp_2m_sample, sampling_timesteps
from genzoo.sampling.schedules import NoiseSchedule, cosine_betas, linear_betas, make_schedule

MU, SIGMA = 0.5, 0.2


def gaussian_denoiser(schedule: NoiseSchedule, mu: float = MU, sigma: float = SIGMA):
    def denoise(x, t):
        a = schedule.sqrt_alphas_cumprod[t].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        s2 = (1 - schedule.alphas_cumprod[t]).to(x.dtype).view_as(a)
        return mu + a * sigma**2 / (a**2 * sigma**2 + s2) * (x - a * mu)

    return denoise


def affine_map(sample_fn, schedule, **options):
    """(mean, std) of a deterministic sampler's output, read off its affine map of the noise."""
    noise = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    out = sample_fn(gaussian_denoiser(schedule), schedule, noise, **options)
    return float(out[0]), float(out[1] - out[0])


# ---- schedules -------------------------------------------------------------


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_schedule_properties(name):
    s = make_schedule(name, 1000)
    ab = s.alphas_cumprod
    assert s.timesteps == 1000 and ab.dtype == torch.float64
    assert (ab[1:] < ab[:-1]).all(), "alpha-bar must fall strictly"
    assert ab[0] > 0.999 and ab[-1] < 1e-4, "starts near the data, ends near pure noise"
    assert ((s.betas > 0) & (s.betas <= 0.999)).all()
    assert (s.log_snr[1:] < s.log_snr[:-1]).all()
    # the posterior variance lies between 0 (t=0) and beta_t
    assert s.posterior_variance[0] == 0
    assert (s.posterior_variance[1:] > 0).all() and (s.posterior_variance <= s.betas).all()
    # posterior mean coefficients: at t=0 the posterior is the data itself
    assert s.posterior_coef_x0[0] == pytest.approx(1.0) and s.posterior_coef_xt[0] == pytest.approx(0.0)
    assert torch.allclose(s.sqrt_alphas_cumprod**2 + s.sqrt_one_minus_alphas_cumprod**2, torch.ones_like(ab))
    assert s.state_dict() == {}, "schedule buffers are recomputed from the config, never saved"


def test_cosine_schedule_matches_its_formula():
    T, offset = 1000, 0.008
    ab = torch.cumprod(1 - cosine_betas(T), 0)
    t = torch.tensor([10, 500, 900], dtype=torch.float64)
    f = lambda u: torch.cos((u / T + offset) / (1 + offset) * math.pi / 2) ** 2  # noqa: E731
    assert torch.allclose(ab[t.long() - 1], f(t) / f(torch.zeros(1, dtype=torch.float64)), rtol=1e-9)


def test_linear_schedule_endpoints_and_rescaling():
    b = linear_betas(1000)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    # fewer steps: betas scale up so the end point stays (nearly) pure noise
    assert torch.cumprod(1 - linear_betas(100), 0)[-1] < 1e-3


def test_add_noise_and_bad_names():
    s = make_schedule("cosine", 100)
    x0, noise = torch.ones(3, 2), torch.zeros(3, 2)
    t = torch.tensor([0, 50, 99])
    xt = s.add_noise(x0, noise, t)
    assert torch.allclose(xt[:, 0], s.sqrt_alphas_cumprod[t].float())
    with pytest.raises(ValueError, match="valid schedules"):
        make_schedule("quadratic")


def test_sampling_timesteps():
    ts = sampling_timesteps(1000, 20)
    assert len(ts) == 20 and ts[0] == 999 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert sampling_timesteps(10, 10) == list(range(9, -1, -1))
    assert sampling_timesteps(1000, 1) == [999]
    with pytest.raises(ValueError):
        sampling_timesteps(10, 11)
    # log-SNR spacing: distinct, ends kept, and evenly spaced in lambda away from the ends
    s = make_schedule("cosine", 1000)
    for steps in (5, 20, 200, 1000):
        ts = sampling_timesteps(s, steps, "logsnr")
        assert len(ts) == steps and ts[0] == 999 and ts[-1] == 0
        assert all(a > b for a, b in zip(ts, ts[1:]))
    gaps = s.log_snr[sampling_timesteps(s, 20, "logsnr")].diff().abs()
    time_gaps = s.log_snr[sampling_timesteps(s, 20, "time")].diff().abs()
    assert ((gaps / gaps.median() - 1).abs() < 0.1).float().mean() > 0.6
    # (the first gap is the cosine schedule's clipped last beta, the same for both spacings)
    assert gaps[1:].max() < time_gaps[1:].max() / 3


# ---- samplers on Gaussian data -------------------------------------------------


@pytest.mark.parametrize("schedule_name", ["cosine", "linear"])
def test_deterministic_samplers_reproduce_gaussian(schedule_name):
    s = make_schedule(schedule_name, 1000)
    for fn, steps in [(ddim_sample, 1000), (dpmpp_2m_sample, 50)]:
        mean, std = affine_map(fn, s, steps=steps)
        assert mean == pytest.approx(MU, abs=2e-3), fn.__name__
        assert std == pytest.approx(SIGMA, rel=0.01), fn.__name__


def test_dpm_solver_is_more_accurate_than_ddim_at_equal_steps():
    s = make_schedule("cosine", 1000)
    err = {}
    for fn in (ddim_sample, dpmpp_2m_sample):
        for steps in (10, 20, 40, 80):
            mean, std = affine_map(fn, s, steps=steps)
            err[fn.__name__, steps] = abs(std - SIGMA) + abs(mean - MU)
    assert err["dpmpp_2m_sample", 20] <= err["ddim_sample", 20]
    assert err["dpmpp_2m_sample", 10] <= err["ddim_sample", 10]
    assert err["dpmpp_2m_sample", 20] < 0.01
    # convergence order: doubling the steps halves DDIM's error (first order) and
    # cuts DPM-Solver++(2M)'s by about four (second order)
    assert 1.7 < err["ddim_sample", 40] / err["ddim_sample", 80] < 2.5
    assert err["dpmpp_2m_sample", 40] / err["dpmpp_2m_sample", 80] > 3


def test_ddpm_reproduces_gaussian():
    # All T steps. (Strided ancestral steps with the posterior variance shrink the spread:
    # about -7% at 100 steps here. That is the known cost of respacing, not a bug.)
    s = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(20_000, 1, generator=g, dtype=torch.float64)
    out = ddpm_sample(gaussian_denoiser(s), s, noise, generator=g)
    # Monte Carlo tolerance: the std of the sample mean is sigma / 141 = 0.0014
    assert out.mean().item() == pytest.approx(MU, abs=5e-3)
    assert out.std().item() == pytest.approx(SIGMA, rel=0.03)


def test_ddim_with_eta_one_is_ddpm():
    s = make_schedule("linear", 1000)
    noise = torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = ddpm_sample(gaussian_denoiser(s), s, noise, steps=30, generator=torch.Generator().manual_seed(2))
    b = ddim_sample(gaussian_denoiser(s), s, noise, steps=30, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a, b, atol=1e-8)
    c = ddim_sample(gaussian_denoiser(s), s, noise, steps=30, eta=0.0)
    assert not torch.allclose(a, c, atol=1e-3)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_are_deterministic_given_a_generator(name):
    s = make_schedule("cosine", 100)
    noise = torch.randn(64, 1)

    def run(seed):
        opts = {"steps": 10} if name == "dpmpp2m" else {"steps": 10, "generator": torch.Generator().manual_seed(seed)}
        return SAMPLERS[name](gaussian_denoiser(s), s, noise, **opts)

    assert torch.equal(run(3), run(3))
    if name == "ddpm":
        assert not torch.equal(run(3), run(4))


def test_clip_bounds_every_x0_prediction():
    s = make_schedule("cosine", 100)
    calls = []

    def wild(x, t):  # a denoiser far outside the data range
        calls.append(int(t[0]))
        return 10 * torch.ones_like(x)

    for name, fn in SAMPLERS.items():
        calls.clear()
        out = fn(wild, s, torch.randn(8, 1), steps=5, clip=1.0)
        assert out.abs().max() <= 1.0, name
        spacing = "logsnr" if name == "dpmpp2m" else "time"
        assert calls == sampling_timesteps(s, 5, spacing), "one network call per step, from T-1 down to 0"

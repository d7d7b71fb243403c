"""Diffusion family: contract, gradients, reproducibility, guidance, learning and the variational bound.

The bound is checked on data whose ideal denoiser is known in closed form
(independent pixels with a known discrete distribution, or Gaussian points):
plugging that denoiser in, the bound must sit just below the true
log-likelihood, which catches a missing or mis-scaled term.
"""

import math

import pytest
import torch

from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.models.base import LABEL_CONDITION, LOG_PROB, SAMPLE, Batch, BatchRandom, GenerativeModel
from genzoo.models.diffusion import DiffusionConfig, DiffusionModel, discretized_gaussian_log_likelihood
from genzoo.registry import get_family

SMALL_UNET = {"channels": [16, 32], "heads": 2}
SMALL_MLP = {"width": 64, "depth": 2}


def image_spec(num_classes=10):
    return {"name": "digits", "kind": "image", "shape": [1, 8, 8], "levels": 17, "num_classes": num_classes}


def points_spec(dims=2, levels=None):
    return {"name": "test", "kind": "points", "shape": [dims], "levels": levels, "num_classes": 0}


def build(spec, variant="eps", **overrides) -> DiffusionModel:
    cfg = DiffusionModel.default_config(spec, variant)
    small = SMALL_UNET if cfg.backbone == "unet" else SMALL_MLP
    for name, value in {**small, **overrides}.items():
        setattr(cfg, name, value)
    return DiffusionModel(cfg)


def batch(x, y=None, step=0, seed=0, global_batch=None, offset=0):
    return Batch(x, y, BatchRandom(seed, step, global_batch or len(x), offset))


def train(model, x, y=None, steps=200, batch_size=128, lr=2e-3, seed=0):
    opt = model.configure_optimizers(lr=lr, weight_decay=0.0)["main"]
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        loss = model.loss(batch(x[idx], None if y is None else y[idx], step, seed))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


# ---- contract -----------------------------------------------------------------
def test_registered_with_variants_and_capabilities():
    info = get_family("diffusion")
    assert info.model_class is DiffusionModel and DiffusionModel.config_class is DiffusionConfig
    assert set(info.variants) == {"eps", "v", "mel", "waveform"}  # mel, waveform: audio only (mel its default), tests/models/test_diffusion_mel.py
    assert {SAMPLE, LOG_PROB, LABEL_CONDITION} <= DiffusionModel.capabilities
    assert DiffusionModel.likelihood == "bound"
    assert DiffusionModel.default_config(image_spec(), "v").prediction == "v"
    image_cfg = DiffusionModel.default_config(image_spec())
    assert image_cfg.backbone == "unet" and image_cfg.num_classes == 10, "labelled data: conditional, so CFG works"
    assert DiffusionModel.default_config(points_spec()).backbone == "mlp"
    assert DiffusionModel.default_config(image_spec(num_classes=0)).num_classes == 0
    assert DiffusionModel.default_train(image_spec())["batch_size"] > 0
    assert set(DiffusionModel.sampler_options()) == {"sampler", "steps", "guidance", "eta", "batch_size"}
    with pytest.raises(GenzooError, match="variant"):
        DiffusionModel.default_config(image_spec(), "no-such-variant")
    for bad in ({"prediction": "x"}, {"schedule": "quadratic"}, {"backbone": "resnet"}):
        with pytest.raises(GenzooError):
            build(image_spec(), **bad)


@pytest.mark.parametrize("spec", [image_spec(), points_spec()])
def test_save_and_load_round_trip(spec, tmp_path):
    model = build(spec, "v")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # leave the zero-initialised state
    model.save_pretrained(tmp_path)
    loaded = GenerativeModel.from_pretrained(tmp_path)
    assert isinstance(loaded, DiffusionModel) and loaded.config == model.config
    opts = {"sampler": "ddim", "steps": 5}
    a = model.sample(4, generator=torch.Generator().manual_seed(0), **opts)
    b = loaded.sample(4, generator=torch.Generator().manual_seed(0), **opts)
    assert torch.equal(a, b)


# ---- training -------------------------------------------------------------
@pytest.mark.parametrize("variant", ["eps", "v"])
@pytest.mark.parametrize("spec", [image_spec(), points_spec()])
def test_every_parameter_gets_a_gradient(spec, variant, digits):
    model = build(spec, variant, attention_levels=[0] if spec["kind"] == "image" else [])
    if spec["kind"] == "image":
        x, y = digits[0].x[:100], digits[0].y[:100]  # every class appears
    else:
        x, y = torch.randn(100, 2), None
    with torch.no_grad():  # move zero-initialised layers off zero, so that every path carries gradient
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.loss(batch(x, y)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_loss_is_the_same_when_the_batch_is_split(digits):
    """All randomness comes from batch.rng, so 2 processes with half batches see what 1 process sees."""
    model = build(image_spec())
    x, y = digits[0].x[:64], digits[0].y[:64]
    whole = model.loss(batch(x, y, step=7, seed=3))
    halves = [model.loss(batch(x[i : i + 32], y[i : i + 32], step=7, seed=3, global_batch=64, offset=i)) for i in (0, 32)]
    assert torch.allclose(whole, sum(halves) / 2, atol=1e-6)
    assert not torch.allclose(whole, model.loss(batch(x, y, step=8, seed=3)))


def test_learns_a_toy2d_distribution():
    from genzoo.eval.toy2d import mmd2

    torch.manual_seed(0)
    train_set, test_set = load_dataset("toy2d:8gaussians", "train"), load_dataset("toy2d:8gaussians", "test")
    model = build(train_set.spec(), "v", width=128, depth=3)
    gen = torch.Generator().manual_seed(0)
    before = mmd2(model.sample(500, generator=gen, sampler="dpmpp2m"), test_set.x[:1000])
    train(model, train_set.x, steps=300, batch_size=128, lr=3e-3)
    samples = model.sample(500, generator=gen, sampler="dpmpp2m")
    after = mmd2(samples, test_set.x[:1000])
    assert after < before / 5 and after < 0.03, (before, after)  # measured: 0.163 -> 0.018
    # the eight modes are found: each holds a fair share of the samples
    angles = torch.atan2(samples[:, 1], samples[:, 0])
    mode = torch.round(angles / (math.pi / 4)).long() % 8
    assert torch.bincount(mode, minlength=8).min() > 500 / 8 / 3


# ---- sampling -------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp2m"])
def test_samples_are_levels_and_reproducible(sampler):
    model = build(image_spec(), "v")
    opts = {"sampler": sampler, "steps": 4}
    a = model.sample(6, condition=3, generator=torch.Generator().manual_seed(1), **opts)
    b = model.sample(6, condition=3, generator=torch.Generator().manual_seed(1), **opts)
    assert a.shape == (6, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.equal(a, a.round()) and a.min() >= 0 and a.max() <= 16
    c = model.sample(6, condition=3, generator=torch.Generator().manual_seed(2), **opts)
    assert not torch.equal(a, c)


def test_sampling_restores_the_training_mode_and_chunks_consistently():
    model = build(points_spec(), "v")
    model.train()
    model.sample(3, generator=torch.Generator().manual_seed(0), sampler="ddim", steps=3)
    assert model.training
    a = model.sample(7, generator=torch.Generator().manual_seed(0), sampler="ddim", steps=3, batch_size=7)
    b = model.sample(7, generator=torch.Generator().manual_seed(0), sampler="ddim", steps=3, batch_size=3)
    assert torch.allclose(a, b, atol=1e-5), "deterministic sampler: chunking must not change the samples"


def test_classifier_free_guidance(digits):
    model = build(image_spec(), "eps")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(5, 1, 8, 8)
    t = torch.tensor([999, 700, 300, 50, 0])
    y = torch.tensor([0, 1, 2, 3, 4])
    cond = model.predict_x0(x, t, y)
    uncond = model.predict_x0(x, t, None)
    assert not torch.allclose(cond, uncond)
    # the batched guided path: w = 1 is the conditional model, w = 0 the unconditional one, linear in between
    for w, expected in [(1.0000001, cond), (0.0, uncond), (3.0, uncond + 3.0 * (cond - uncond))]:
        assert torch.allclose(model.predict_x0(x, t, y, guidance=w), expected, atol=1e-4, rtol=1e-4), w
    # guidance=1 (the default) samples exactly as plain conditional sampling
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = model.sample(4, condition=[1, 2, 3, 4], generator=g(), sampler="ddim", steps=4)
    b = model.sample(4, condition=[1, 2, 3, 4], generator=g(), sampler="ddim", steps=4, guidance=1.0)
    assert torch.equal(a, b)
    model.sample(4, condition=2, generator=g(), sampler="dpmpp2m", steps=3, guidance=3.0)  # runs


def test_bad_requests_raise_genzoo_errors():
    model = build(image_spec(num_classes=10))
    for condition in (10, -1, [1, 2]):
        with pytest.raises(GenzooError):
            model.sample(3, condition=condition, sampler="ddim", steps=2)
    with pytest.raises(GenzooError, match="valid samplers"):
        model.sample(2, sampler="euler")
    with pytest.raises(GenzooError, match="eta"):
        model.sample(2, sampler="ddpm", eta=0.5, steps=2)
    with pytest.raises(GenzooError, match="steps"):
        model.sample(2, sampler="ddim", steps=0)
    with pytest.raises(GenzooError, match="condition"):
        model.sample(2, sampler="ddim", steps=2, guidance=2.0)
    with pytest.raises(GenzooError, match="levels"):
        model.log_prob(torch.full((2, 1, 8, 8), 0.5))
    unconditional = build(image_spec(num_classes=0))
    with pytest.raises(GenzooError, match="class conditioning"):
        unconditional.sample(2, condition=1, sampler="ddim", steps=2)


# ---- the variational bound --------------------------------------------------
def _ideal_discrete_denoiser(model, probs):
    """E[x_0 | x_t] for independent pixels with level probabilities ``probs``."""
    levels = len(probs)
    centres = (2 * torch.arange(levels, dtype=torch.float64) + 1) / levels - 1
    sched = model.schedule

    def predict_x0(x_t, t, y=None, guidance=1.0):
        a = sched.sqrt_alphas_cumprod[t].view(-1, *([1] * (x_t.ndim - 1)))
        s2 = (1 - sched.alphas_cumprod[t]).view_as(a)
        logits = probs.log() - (x_t.double()[..., None] - a[..., None] * centres) ** 2 / (2 * s2[..., None])
        return (logits.softmax(-1) * centres).sum(-1).to(x_t.dtype)

    return predict_x0


def test_bound_with_the_ideal_denoiser_sits_just_below_the_discrete_log_likelihood():
    probs = torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1], dtype=torch.float64)
    model = build(points_spec(dims=3, levels=5), timesteps=1000, schedule="cosine")
    model.predict_x0 = _ideal_discrete_denoiser(model, probs)
    x = torch.multinomial(probs, 3 * 1000, replacement=True, generator=torch.Generator().manual_seed(0)).view(1000, 3).float()
    true = probs.log()[x.long()].sum(1)
    bound = model.log_prob(x).double()
    gap = (true - bound).mean().item()
    # exact arithmetic gives 0.048 (0.016 per dimension); the rest is Monte Carlo noise
    assert 0.0 < gap < 0.1, f"bound should be a little below the truth: gap {gap:.4f} nats"
    # the stratified subset is an unbiased estimate of the same bound
    subset = torch.stack([model.log_prob(x[:100], timesteps_subset=50, generator=torch.Generator().manual_seed(s)) for s in range(8)])
    assert subset.mean().item() == pytest.approx(bound[:100].mean().item(), abs=0.1)


def test_bound_on_gaussian_points_with_the_ideal_denoiser():
    mu, sigma = 0.5, 0.3
    model = build(points_spec(dims=2), timesteps=1000, schedule="cosine")
    sched = model.schedule

    def predict_x0(x_t, t, y=None, guidance=1.0):
        a = sched.sqrt_alphas_cumprod[t].view(-1, 1).to(x_t.dtype)
        s2 = (1 - sched.alphas_cumprod[t]).view(-1, 1).to(x_t.dtype)
        return mu + a * sigma**2 / (a**2 * sigma**2 + s2) * (x_t - a * mu)

    model.predict_x0 = predict_x0
    x = mu + sigma * torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    true = (-0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(1)
    gap = (true - model.log_prob(x)).mean().item()
    assert -0.02 < gap < 0.05, gap  # a bound (up to Monte Carlo noise), and a tight one
    # the other fixed reverse variance is a looser bound: 0.40 nats per dimension here
    loose = (true - model.log_prob(x, variance="posterior")).mean().item()
    assert 0.6 < loose < 1.0, loose


def test_discretized_decoder_is_a_distribution_over_levels():
    levels = 17
    k = torch.arange(levels, dtype=torch.float64)
    for mean in (-1.3, -0.2, 0.0, 0.77, 1.0, 5.0):
        for std in (1e-3, 0.05, 1.0):
            logp = discretized_gaussian_log_likelihood(k, torch.full_like(k, mean), std, levels)
            assert torch.isfinite(logp).all()
            assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    # far into the tail it stays finite (no log(0))
    far = discretized_gaussian_log_likelihood(torch.tensor([0.0]), torch.tensor([0.9], dtype=torch.float64), 1e-3, levels)
    assert torch.isfinite(far).all() and far.item() < -1e5


def test_bound_improves_with_training(digits):
    torch.manual_seed(0)
    train_set, test_set = digits
    model = build(train_set.spec(), "eps", channels=[8, 16])
    x = test_set.x[:32]
    before = model.log_prob(x, timesteps_subset=20).mean().item()
    train(model, train_set.x, train_set.y, steps=100, batch_size=64, lr=5e-3)
    after = model.log_prob(x, timesteps_subset=20)
    assert torch.isfinite(after).all()
    assert after.mean().item() > before + 30, (before, after.mean().item())  # measured: -301 -> -250
    assert (after < 0).all(), "a bound on a discrete probability is below 0 nats"

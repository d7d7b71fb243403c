"""VAE family: gradients, a normalized likelihood, the IWAE bound, learning, sampling, refusals."""

import itertools
import math

import pytest
import torch

from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.models.base import LABEL_CONDITION, LOG_PROB, SAMPLE, Batch, BatchRandom, GenerativeModel, Updater
from genzoo.models.vae import VAE, VAEConfig
from genzoo.registry import get_family

SMALL_IMAGE = {"conv_widths": [8, 16], "hidden_widths": [64], "latent_dim": 8}


def image_spec(shape=(1, 8, 8), levels=17, num_classes=10):
    return {"name": "test", "kind": "image", "shape": list(shape), "levels": levels, "num_classes": num_classes}


def points_spec(dims=2):
    return {"name": "test", "kind": "points", "shape": [dims], "levels": None, "num_classes": 0}


def build(spec, variant="", **overrides) -> VAE:
    cfg = VAE.default_config(spec, variant)
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return VAE(cfg)


def batch(x, y=None, step=0, seed=0, global_batch=None, offset=0):
    return Batch(x, y, BatchRandom(seed, step, global_batch or len(x), offset))


def train(model, x, y=None, steps=300, batch_size=64, lr=3e-3, seed=0):
    """A tiny training loop through ``training_step`` and the Trainer's Updater."""
    opt = Updater(model.configure_optimizers(lr=lr, weight_decay=0.0), grad_clip=10.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        metrics = model.training_step(batch(x[idx], None if y is None else y[idx], step, seed), step, opt)
    assert set(metrics) >= {"loss", "recon", "kl"}
    return model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def trained_digits(digits):
    """A small conv VAE trained for a few hundred steps, shared by the tests that need a fitted model."""
    torch.manual_seed(0)
    train_set, _ = digits
    return train(build(train_set.spec(), **SMALL_IMAGE), train_set.x, steps=250)


# ---- structure ------------------------------------------------------------
def test_registered_with_variants_and_capabilities():
    info = get_family("vae")
    assert info.model_class is VAE and set(info.variants) == {"vae", "beta-vae"}
    assert {SAMPLE, LOG_PROB, LABEL_CONDITION} <= VAE.capabilities and VAE.likelihood == "bound"
    assert VAE.default_config(image_spec(), "beta-vae").beta == 4.0
    assert VAE.default_config(image_spec()).beta == 1.0
    assert VAE.default_config(image_spec()).architecture == "conv"
    assert VAE.default_config(points_spec()).architecture == "mlp"
    assert VAE.default_train(image_spec())["batch_size"] > 0
    assert set(VAE.sampler_options()) == {"temperature", "mode"}
    with pytest.raises(GenzooError, match="variant"):
        VAE.default_config(image_spec(), "no-such-variant")


@pytest.mark.parametrize(
    "spec, overrides",
    [
        (image_spec(), SMALL_IMAGE),
        (image_spec(), {**SMALL_IMAGE, "num_classes": 10}),
        (image_spec(shape=(3, 7, 5), levels=None), {**SMALL_IMAGE, "num_classes": 2}),  # odd sizes, Gaussian pixels
        (points_spec(), {"decoder_std": "predicted"}),
        (points_spec(), {"decoder_std": "shared", "num_classes": 3}),
    ],
)
def test_every_parameter_gets_a_gradient(spec, overrides):
    torch.manual_seed(0)
    model = build(spec, **overrides)
    n = 6
    if spec["levels"]:
        x = torch.randint(spec["levels"], (n, *spec["shape"])).float()
    else:
        x = torch.randn(n, *spec["shape"])
    y = torch.arange(n) % model.config.num_classes if model.config.num_classes else None
    model.loss(batch(x, y)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
    # The decoder must give back the data's own shape, however odd.
    assert model.sample(2, condition=0 if y is not None else None).shape == (2, *spec["shape"])


# ---- the likelihood -------------------------------------------------------
@pytest.mark.parametrize("pixels", ["categorical", "logistic"])
def test_categorical_likelihood_sums_to_one_over_all_images(pixels):
    """Enumerate every 2x2 image of 3 levels: p(x|z) must sum to one over all 81 of them."""
    torch.manual_seed(0)
    model = build(image_spec(shape=(1, 2, 2), levels=3), conv_widths=[4], hidden_widths=[8], latent_dim=2,
                  pixel_distribution=pixels, dropout=0.0).eval()
    with torch.no_grad():  # a far-from-uniform decoder, so that the test cannot pass by accident
        model.decoder_body.net[-1].bias.normal_(0.0, 3.0)
    images = torch.tensor(list(itertools.product(range(3), repeat=4)), dtype=torch.float32).view(81, 1, 2, 2)
    z = torch.randn(1, 2).expand(81, 2)
    with torch.no_grad():
        log_p = model._log_likelihood(model._decode(z, None), images)
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-5)
    assert log_p.max() - log_p.min() > 1.0, "decoder should not be uniform here"


def test_gaussian_likelihood_integrates_to_one():
    torch.manual_seed(0)
    model = build(points_spec(dims=1), hidden_widths=[8], latent_dim=1).eval()
    grid = torch.linspace(-30, 30, 60001).unsqueeze(1)
    with torch.no_grad():
        density = model._log_likelihood(model._decode(torch.full((len(grid), 1), 0.3), None), grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-3)


def test_iwae_bound_is_above_elbo_and_tightens_with_k(trained_digits, digits):
    x = digits[1].x[:64]
    model = trained_digits
    elbo = model.elbo(x, samples=20).mean()
    bounds = [model.log_prob(x, k=k).mean() for k in (1, 10, 100)]
    assert bounds[0].item() == pytest.approx(model.elbo(x, samples=1).mean().item(), abs=3.0)  # k=1 is an ELBO
    assert bounds[1] > elbo and bounds[2] > elbo
    assert bounds[0] <= bounds[1] + 0.05 and bounds[1] <= bounds[2] + 0.05
    assert bounds[2] < 0
    assert model.training, "log_prob must restore train mode"
    assert not model.log_prob(x[:2], k=5).requires_grad
    assert torch.equal(model.log_prob(x[:8], k=7), model.log_prob(x[:8], k=7)), "same seed, same estimate"
    # Chunking over k and over the batch changes only how the work is split, not the bound's size.
    split = model.log_prob(x[:8], k=50, batch_size=3)
    assert split.mean().item() == pytest.approx(model.log_prob(x[:8], k=50).mean().item(), abs=1.0)


def test_iwae_nll_matches_a_known_gaussian_density():
    """Points from N(mu, diag(std^2)): a Gaussian decoder can represent it exactly."""
    torch.manual_seed(0)
    mu, std = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.5])
    g = torch.Generator().manual_seed(1)
    train_x = mu + std * torch.randn(4000, 2, generator=g)
    test_x = mu + std * torch.randn(2000, 2, generator=g)
    true_nll = (0.5 * ((test_x - mu) / std) ** 2 + std.log() + 0.5 * math.log(2 * math.pi)).sum(1).mean().item()
    model = build(points_spec(), hidden_widths=[32, 32])
    untrained_nll = -model.log_prob(test_x, k=100).mean().item()
    train(model, train_x, steps=600, batch_size=256, lr=1e-2)
    trained_nll = -model.log_prob(test_x, k=200).mean().item()
    assert abs(trained_nll - true_nll) < 0.15, (trained_nll, true_nll)
    assert untrained_nll > true_nll + 1.0, (untrained_nll, true_nll)


def test_model_learns_digits(trained_digits, digits):
    train_set, test_set = digits
    torch.manual_seed(0)
    untrained = build(train_set.spec(), **SMALL_IMAGE)
    x = test_set.x[:100]
    before = -untrained.log_prob(x, k=20).mean().item()
    after = -trained_digits.log_prob(x, k=20).mean().item()
    assert after < before - 30 and after < 115, (before, after)  # uniform pixels: 64 * ln 17 = 181 nats


def test_loss_uses_only_batch_randomness_and_splits_across_processes(trained_digits, digits):
    model = trained_digits
    x = digits[0].x[:32]
    torch.manual_seed(123)
    full = model.loss(batch(x, step=5))
    torch.manual_seed(456)  # the global RNG must not matter
    assert torch.equal(full, model.loss(batch(x, step=5)))
    halves = [model.loss(batch(x[i : i + 16], step=5, global_batch=32, offset=i)) for i in (0, 16)]
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(full.item(), rel=1e-5)
    assert not torch.equal(full, model.loss(batch(x, step=6))), "different steps should draw different noise"


def test_beta_weights_the_kl_and_free_bits_floor_it(digits):
    torch.manual_seed(0)
    spec, x = digits[0].spec(), digits[0].x[:16]  # a fresh Batch per call: its BatchRandom is consumed
    vae, beta_vae = build(spec, **SMALL_IMAGE), build(spec, "beta-vae", **SMALL_IMAGE)
    beta_vae.load_state_dict(vae.state_dict())
    recon, kl, charged = vae._elbo_terms(batch(x))
    assert vae.loss(batch(x)).item() == pytest.approx((recon + charged).item(), rel=1e-5)
    assert beta_vae.loss(batch(x)).item() == pytest.approx((recon + 4 * charged).item(), rel=1e-5)
    floor = vae.config.free_bits * vae.config.latent_dim
    assert vae.config.free_bits > 0 and charged >= kl and charged >= floor - 1e-4
    plain = build(spec, **SMALL_IMAGE, free_bits=0.0)
    plain.load_state_dict(vae.state_dict())
    recon0, kl0, charged0 = plain._elbo_terms(batch(x))
    assert torch.equal(kl0, charged0) and torch.equal(kl0, kl) and torch.equal(recon0, recon)
    metrics = plain.training_step(batch(x), 0, Updater(plain.configure_optimizers(1e-3, 0.0), grad_clip=None))
    assert metrics["neg_elbo"] == pytest.approx(metrics["recon"] + metrics["kl"], rel=1e-5)
    assert metrics["loss"] == pytest.approx(metrics["neg_elbo"], rel=1e-5)


# ---- generation -----------------------------------------------------------
def test_samples_are_levels_and_reproducible(trained_digits):
    model = trained_digits
    a = model.sample(10, generator=torch.Generator().manual_seed(3))
    b = model.sample(10, generator=torch.Generator().manual_seed(3))
    c = model.sample(10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (10, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, a.round()) and a.min() >= 0 and a.max() <= 16
    mean = model.sample(10, generator=torch.Generator().manual_seed(3), mode="mean", temperature=0.5)
    assert torch.equal(mean, mean.round()) and not torch.equal(mean, a)
    prior_mean = model.sample(3, temperature=0.0, mode="mean")  # z = 0 for every sample
    assert torch.equal(prior_mean[0], prior_mean[1]) and torch.equal(prior_mean[0], prior_mean[2])
    x = load_dataset("digits", "test").x[:5]
    assert model.reconstruct(x).shape == x.shape
    mean_z, log_var = model.encode(x)
    assert mean_z.shape == log_var.shape == (5, model.config.latent_dim)


def test_conditional_vae_samples_its_condition_and_bounds_both_ways():
    torch.manual_seed(0)
    model = build(image_spec(), **SMALL_IMAGE, num_classes=10)
    x = torch.randint(17, (4, 1, 8, 8)).float()
    assert model.sample(3, condition=[1, 2, 3]).shape == (3, 1, 8, 8)
    given = model.log_prob(x, condition=torch.tensor([0, 1, 2, 3]), k=5)
    assert not torch.equal(given, model.log_prob(x, condition=torch.tensor([4, 5, 6, 7]), k=5)), "labels must matter"
    marginal = model.log_prob(x, k=5)  # log (1/C) sum_c p(x|c)
    assert given.shape == marginal.shape == (4,) and torch.isfinite(marginal).all()
    with pytest.raises(GenzooError, match="labels"):
        model.loss(batch(x))


def test_bad_conditions_and_inputs_are_refused(trained_digits):
    with pytest.raises(GenzooError, match="class conditioning"):
        trained_digits.sample(2, condition=3)
    conditional = build(image_spec(), **SMALL_IMAGE, num_classes=10)
    with pytest.raises(GenzooError, match="0..9"):
        conditional.sample(2, condition=10)
    with pytest.raises(GenzooError, match="one per sample"):
        conditional.sample(3, condition=[1, 2])
    with pytest.raises(GenzooError, match="mode"):
        trained_digits.sample(2, mode="best")
    with pytest.raises(GenzooError, match="integer levels"):
        trained_digits.log_prob(torch.full((1, 1, 8, 8), 0.5))
    with pytest.raises(GenzooError, match="shape"):
        trained_digits.log_prob(torch.zeros(1, 64))
    with pytest.raises(GenzooError, match="architecture"):
        VAE(VAEConfig(data=points_spec(), architecture="conv"))


def test_checkpoint_round_trip(trained_digits, tmp_path):
    trained_digits.save_pretrained(tmp_path / "ckpt")
    loaded = GenerativeModel.from_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, VAE) and loaded.config == trained_digits.config
    x = load_dataset("digits", "test").x[:4]
    assert torch.equal(loaded.log_prob(x, k=5), trained_digits.log_prob(x, k=5))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(loaded.sample(3, generator=g()), trained_digits.sample(3, generator=g()))

"""Tests that close gaps found by mutation testing: each one fails on a specific deliberate bug
that the rest of the suite let through (named in the test's docstring)."""

import math
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genzoo.api import build_model
from genzoo.data import load_dataset
from genzoo.models.base import Batch, BatchRandom, GenerativeModel, ModelConfig
from genzoo.train import Trainer, TrainConfig
from genzoo.train.ema import EMA
from interrupt import crash_at

POINTS = "toy2d:moons"


# ---- a tiny test-only family whose training noise comes from torch's global generator ----------
@dataclass
class GlobalNoiseConfig(ModelConfig):
    width: int = 16
    dropout: float = 0.3


class GlobalNoiseModel(GenerativeModel):
    """Denoising regression on 2-D points. Unlike genzoo's families it draws its training noise
    (input noise, per-example weights, dropout masks) from torch's *global* generator, so a
    resumed run is only exact if the Trainer restores that generator's state."""

    family = "test-global-noise"
    config_class = GlobalNoiseConfig

    def __init__(self, config: GlobalNoiseConfig):
        super().__init__(config)
        w = config.width
        self.net = nn.Sequential(nn.Linear(2, w), nn.SiLU(), nn.Dropout(config.dropout), nn.Linear(w, 2))

    def loss(self, batch: Batch) -> torch.Tensor:
        x = batch.x
        noisy = x + 0.1 * torch.randn_like(x)  # global generator
        weight = torch.rand(len(x), 1, device=x.device)  # global generator
        return (weight * (self.net(noisy) - x) ** 2).mean()


def make_noise_model(seed=0):
    data = load_dataset(POINTS, "train")
    torch.manual_seed(seed)
    return GlobalNoiseModel(GlobalNoiseConfig(data=data.spec())), data


def train_cfg(**kw):
    base = dict(steps=30, batch_size=32, lr=5e-3, warmup_steps=3, ema_decay=0.9, progress=False,
                checkpoint_every=10, log_every=5, val_every=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def flat(model):
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()])


# ---- 1. EMA ------------------------------------------------------------------------------
def test_ema_update_follows_the_warmed_up_recursion():
    """Mutation: EMA.update never moves the averaged weights (lerp weight 0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.3)
    e = [p.detach().clone() for p in model.parameters()]
    for step in range(5):  # d = 0.1, 0.18, 0.25, then the cap 0.3: both branches of the warm-up
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        ema.update(model, step)
        d = min(0.3, (1 + step) / (10 + step))
        e = [d * ei + (1 - d) * p.detach() for ei, p in zip(e, model.parameters())]
        for ei, got in zip(e, ema.model.parameters()):
            torch.testing.assert_close(got, ei, rtol=1e-5, atol=1e-6)
        assert torch.equal(ema.model[1].running_mean, model[1].running_mean)  # buffers are copied


def test_trainer_ema_and_saved_weights_follow_the_raw_weights(tmp_path):
    """Mutation: EMA weights never move; sampling, eval and checkpoints all use them."""
    model, data = make_noise_model()
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    raw = []  # the raw weights after each optimizer step
    original = model.training_step

    def record(batch, step, opt):
        out = original(batch, step, opt)
        raw.append({k: v.detach().clone() for k, v in model.named_parameters()})
        return out

    model.training_step = record
    decay, steps = 0.3, 8
    trainer = Trainer(model, data, train_cfg(steps=steps, ema_decay=decay, checkpoint_every=100), out_dir=tmp_path)
    trainer.fit()
    assert len(raw) == steps

    expected = dict(initial)
    for t, p in enumerate(raw):  # e_{t+1} = d_t e_t + (1 - d_t) p_{t+1}
        d = min(decay, (1 + t) / (10 + t))
        expected = {k: d * expected[k] + (1 - d) * p[k] for k in expected}

    ema = dict(trainer.sampling_model.named_parameters())
    saved = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    for k in expected:
        assert not torch.allclose(saved[k], initial[k], atol=1e-4), f"{k}: saved EMA weights never moved"
        torch.testing.assert_close(ema[k], expected[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(saved[k], expected[k], rtol=1e-5, atol=1e-6)
        # With this short memory the EMA sits much closer to the raw weights than to the start.
        assert (saved[k] - raw[-1][k]).norm() < 0.5 * (initial[k] - raw[-1][k]).norm()


# ---- 3. the global RNG across resume -------------------------------------------------------
def test_resume_restores_torch_global_rng(tmp_path):
    """Mutation: _load_state does not restore torch's global RNG state."""
    straight, data = make_noise_model()
    Trainer(straight, data, train_cfg(), out_dir=tmp_path / "straight").fit()

    model, _ = make_noise_model()
    trainer = Trainer(model, data, train_cfg(), out_dir=tmp_path / "resumed")
    crash_at(model, 25)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()

    fresh, _ = make_noise_model(seed=123)  # different init and global RNG state: all must come from the checkpoint
    torch.rand(1000)  # move the global generator further away
    Trainer(fresh, data, train_cfg(), out_dir=tmp_path / "resumed").fit(resume=True)
    assert not torch.equal(flat(straight), flat(make_noise_model(seed=123)[0]))  # the comparison is not vacuous
    assert torch.equal(flat(fresh), flat(straight))
    a = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # EMA weights too


# ---- 4. dequantization noise on the flow training path ------------------------------------
@pytest.fixture(scope="module")
def digits_train():
    return load_dataset("digits", "train")


@pytest.mark.parametrize("family", ["realnvp", "glow"])
def test_flow_training_dequantization_fills_the_whole_bin(family, digits_train, monkeypatch):
    """Mutation: the training path dequantizes with u ~ U[0, 0.5) instead of U[0, 1)."""
    model = build_model(family, digits_train)
    model.train()
    levels = model.levels
    assert levels == 17
    x = digits_train.x[:256]
    seen = []
    original = model.log_density

    def capture(y):
        seen.append(y.detach().clone())
        return original(y)

    monkeypatch.setattr(model, "log_density", capture)
    with torch.no_grad():
        loss = model.loss(Batch(x, digits_train.y[:256], BatchRandom(0, 3, len(x), 0)))
    assert torch.isfinite(loss)
    assert len(seen) == 1 and seen[0].shape == x.shape
    pos = (seen[0] + 1) / 2 * levels  # level k's bin is [k, k + 1) here
    frac = pos - x
    assert frac.min() >= -1e-4 and frac.max() < 1 + 1e-4, "a dequantized value left its own level's bin"
    # Each value falls in its own level's bin (allowing float rounding at the very edges).
    assert (pos.floor().clamp(0, levels - 1) == x).float().mean() > 0.999
    assert frac.max() > 0.9 and frac.min() < 0.1, f"noise covers [{frac.min():.3f}, {frac.max():.3f}] of the bin"
    assert abs(frac.mean().item() - 0.5) < 0.02
    assert abs((frac > 0.5).float().mean().item() - 0.5) < 0.02  # the upper half of each bin is used as often


# ---- 5. the conditional VAE's uniform class prior -----------------------------------------
@pytest.fixture(scope="module")
def conditional_vae(digits_train):
    return build_model("vae", digits_train, overrides={"num_classes": 10})


def _per_class(model, x, k):
    return torch.stack([model.log_prob(x, condition=c, k=k) for c in range(10)], 1)


def test_conditional_vae_marginal_is_the_uniform_mixture_exactly(digits_train, conditional_vae):
    """Mutation: the class mixture in VAE._bound drops its -log C.

    With q(z|x) = p(z) = N(0, I) and a decoder that ignores z, every importance weight equals
    p(x|c), so the bound is exact and free of sampling noise."""
    import copy

    model = copy.deepcopy(conditional_vae)
    with torch.no_grad():
        model.to_posterior.weight.zero_()
        model.to_posterior.bias.zero_()  # mean 0, log variance 0
        model.decoder_head.layers[0].weight[:, : model.config.latent_dim].zero_()  # z ignored
    x = digits_train.x[:16]
    per_class = _per_class(model, x, k=4)
    assert per_class.std(1).min() > 1e-3  # the classes really differ, so the mixture is not trivial
    marginal = model.log_prob(x, k=4)
    torch.testing.assert_close(marginal, torch.logsumexp(per_class, 1) - math.log(10), rtol=1e-5, atol=1e-4)
    assert (marginal <= per_class.max(1).values + 1e-4).all()
    assert (marginal >= per_class.min(1).values - 1e-4).all()


def test_conditional_vae_marginal_matches_the_class_mixture(digits_train, conditional_vae):
    """Mutation: the class mixture in VAE._bound drops its -log C (a +2.3 nat shift)."""
    x = digits_train.x[:32]
    k = 8
    per_class = _per_class(conditional_vae, x, k)
    marginal = conditional_vae.log_prob(x, k=k)
    expected = torch.logsumexp(per_class, 1) - math.log(10)
    # Same seed and k; each class's draws differ between the two calls, so allow Monte Carlo noise
    # (measured below 0.15 nats), far below the log 10 = 2.3 nats the prior contributes.
    assert (marginal - expected).abs().max() < 0.5
    assert abs((marginal - expected).mean().item()) < 0.1
    assert (marginal <= per_class.max(1).values + 0.5).all()

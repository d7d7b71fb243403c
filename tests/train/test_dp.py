"""DP-SGD (genzoo.train.dp): the noise the accountant asks for, per-example clipping against a brute-force
computation, the spent epsilon recorded and restored on resume, and clear refusals."""

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.data import load_dataset
from genzoo.models.base import GenerativeModel, ModelConfig
from genzoo.train import Trainer, TrainConfig
from genzoo.train import dp
from interrupt import crash_at


@dataclass
class ToyConfig(ModelConfig):
    norm: str = ""  # "batch": a BatchNorm layer, which DP must refuse; "layer": a LayerNorm (Opacus' hooks, not ghost clipping)


class ToyAE(GenerativeModel):
    """A tiny autoencoder on 2-D points: its loss is a mean of per-example losses through Linear layers."""

    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        norm = {"batch": [nn.BatchNorm1d(8)], "layer": [nn.LayerNorm(8)]}.get(config.norm, [])
        self.net = nn.Sequential(nn.Linear(2, 8), *norm, nn.Tanh(), nn.Linear(8, 2))

    def loss(self, batch):
        return (self.net(batch.x) - batch.x).square().sum(1).mean()


def toy(norm="", seed=0):
    data = load_dataset("toy2d:8gaussians", "train")
    torch.manual_seed(seed)
    return ToyAE(ToyConfig(data=data.spec(), norm=norm)), data


def cfg(**kw):
    base = dict(steps=8, batch_size=64, lr=1e-2, warmup_steps=0, ema_decay=0.9, progress=False, checkpoint_every=4,
                log_every=2, val_every=0, dp_epsilon=3.0, dp_delta=1e-5, dp_max_grad_norm=0.5)
    base.update(kw)
    return TrainConfig(**base)


def test_noise_multiplier_is_opacus_and_spends_at_most_the_target_close_to_it():
    from opacus.accountants.utils import get_noise_multiplier

    q, steps, sigmas = 64 / 1000, 300, []
    for eps in (1.0, 8.0):
        sigma = dp.noise_multiplier(eps, 1e-5, q, steps)
        assert sigma == pytest.approx(get_noise_multiplier(target_epsilon=eps, target_delta=1e-5, sample_rate=q, steps=steps,
                                                           accountant="rdp", epsilon_tolerance=0.01))
        spent = dp.spent_epsilon([(sigma, q, steps)], 1e-5)
        assert eps - 0.05 <= spent <= eps
        sigmas.append(sigma)
    assert sigmas[0] > sigmas[1]  # less budget, more noise
    with pytest.raises(GenzooError, match="raise --dp-epsilon"):
        dp.noise_multiplier(1e-9, 1e-5, 0.9, 10_000)


@pytest.mark.parametrize("norm,ghost", [("", True), ("layer", False)])
def test_per_example_clipping_matches_a_brute_force_computation(norm, ghost):
    model, data = toy(norm)
    opt = model.configure_optimizers(1e-2, 0.0)
    privacy = dp.PrivateTraining(model, opt, cfg(), len(data))
    assert (privacy.ghost is not None) == ghost and bool(privacy.hooks) != ghost  # Linear-only: ghost clipping; else Opacus
    privacy.sigma = 0.0  # clipping alone, to compare exactly
    x = data.x[:16]
    model.train()
    singles, norms = [], []
    for xi in x:  # one example at a time: its own gradient
        grads = torch.autograd.grad((model.net(xi[None]) - xi[None]).square().sum(), list(model.parameters()))
        singles.append(grads)
        norms.append(float(torch.sqrt(sum(g.square().sum() for g in grads))))
    C = privacy.max_grad_norm = sorted(norms)[len(norms) // 2]  # half the examples get clipped
    expected = [torch.zeros_like(p) for p in model.parameters()]
    for grads, norm in zip(singles, norms):
        for e, g in zip(expected, grads):
            e += g * min(1.0, C / (norm + 1e-6))

    privacy.batch_len = len(x)
    privacy.reset()  # the single-example passes above went through the hooks too
    (model.net(x) - x).square().sum(1).mean().backward()
    privacy.clip_and_noise("main")
    got = [p.grad.clone() for p in model.parameters()]
    assert min(norms) < C <= max(norms)  # some examples clipped, some not: both branches checked
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e / privacy.expected_batch, rtol=1e-4, atol=1e-6)
    privacy.detach()


def test_noise_has_the_calibrated_scale():
    model, data = toy()
    privacy = dp.PrivateTraining(model, model.configure_optimizers(1e-2, 0.0), cfg(), len(data))
    for p in model.parameters():
        p.grad_sample = torch.zeros(0, *p.shape)
    privacy.batch_len = 0
    privacy.clip_and_noise("main")  # no examples: the update is the noise alone
    noise = torch.cat([p.grad.flatten() for p in model.parameters()])
    want = privacy.sigma * privacy.max_grad_norm / privacy.expected_batch
    assert noise.std().item() == pytest.approx(want, rel=0.5)  # 50 numbers: a loose but real check of sigma*C/B
    privacy.detach()


def test_poisson_batches_have_the_sample_rate(monkeypatch):
    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    model, data = toy()
    privacy = dp.PrivateTraining(model, model.configure_optimizers(1e-2, 0.0), cfg(batch_size=100), len(data))
    sizes = [len(privacy.sample_rows(s)) for s in range(30)]
    assert len(set(sizes)) > 1  # Poisson: the batch size varies
    assert sum(sizes) / len(sizes) == pytest.approx(100, rel=0.1)
    assert torch.equal(privacy.sample_rows(3), privacy.sample_rows(3))  # a function of (seed, step)
    privacy.detach()


def test_a_dp_run_records_the_spent_epsilon_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv(dp.SEEDED_ENV, "1")  # exact replay needs the reproducible (insecure) noise
    straight, data = toy()
    summary = Trainer(straight, data, cfg(), out_dir=tmp_path / "a").fit()
    spent = summary["privacy"]["epsilon"]
    assert 2.9 <= spent <= 3.0 and summary["privacy"]["steps"] == 8
    recorded = json.loads((tmp_path / "a" / "privacy.json").read_text())
    assert recorded["epsilon"] == pytest.approx(spent) and recorded["randomness"] == dp.SEEDED
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["dp_epsilon_spent"] for r in rows if "dp_epsilon_spent" in r]
    assert logged == sorted(logged) and logged[-1] == pytest.approx(spent, abs=1e-3)
    assert json.loads((tmp_path / "a" / "run.json").read_text())["train_config"]["dp_epsilon"] == 3.0
    assert not any(hasattr(m, "autograd_grad_sample_hooks") for m in straight.modules())  # hooks gone after fit

    model, _ = toy()
    crash_at(model, 6)  # killed after the checkpoint of step 4
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, data, cfg(), out_dir=tmp_path / "b").fit()
    fresh, _ = toy(seed=5)
    resumed = Trainer(fresh, data, cfg(), out_dir=tmp_path / "b").fit(resume=True)
    assert resumed["privacy"]["epsilon"] == pytest.approx(spent)  # the accountant's history came back
    for a, b in zip(straight.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)  # same Poisson batches and the same seeded noise after the resume
    with pytest.raises(GenzooError, match="calibrated for 8 steps"):
        Trainer(toy()[0], data, cfg(steps=20), out_dir=tmp_path / "b").fit(resume=True)


def test_dp_weights_differ_from_plain_training_and_ema_follows():
    a, data = toy()
    b, _ = toy()
    Trainer(a, data, cfg(dp_epsilon=None, dp_delta=None)).fit()
    t = Trainer(b, data, cfg())
    t.fit()
    assert not torch.equal(a.net[0].weight, b.net[0].weight)
    assert not torch.equal(t.ema.model.net[0].weight, b.net[0].weight)  # EMA of the private weights, still updating


@pytest.mark.parametrize("kw, norm, message", [
    ({}, "batch", "BatchNorm"),
    ({"steps": None, "minutes": 1.0}, "", "needs --steps"),
    ({"grad_accum": 2}, "", "--grad-accum 1"),
    ({"divergence_retries": 1}, "", "divergence"),
])
def test_what_dp_cannot_protect_is_refused_clearly(kw, norm, message):
    model, data = toy(norm=norm)
    with pytest.raises(GenzooError, match=message):
        Trainer(model, data, cfg(**kw))


def test_refused_families_say_why():
    model, data = toy()
    model.family = "ebm"
    with pytest.raises(GenzooError, match="Langevin"):
        Trainer(model, data, cfg())
    with pytest.raises(GenzooError, match="--dp-delta needs --dp-epsilon"):
        cfg(dp_epsilon=None)


def test_a_gan_makes_only_its_discriminator_private():
    from genzoo.api import build_model

    data = load_dataset("toy2d:8gaussians", "train")
    gan = build_model("gan", data, None, {"mlp_width": 16, "mlp_depth": 2, "latent_dim": 4, "spectral_norm": False}, 0)
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    summary = Trainer(gan, data, cfg(steps=3, ema_decay=None)).fit()
    assert summary["privacy"]["private_optimizers"] == ["discriminator"] and summary["privacy"]["steps"] == 3
    changed = {k.split(".")[0] for k, v in gan.state_dict().items() if not torch.equal(before[k], v)}
    assert {"generator", "discriminator"} <= changed
    with pytest.raises(GenzooError, match="spectral_norm=false"):
        Trainer(build_model("gan", data, None, {"mlp_width": 16, "mlp_depth": 2, "latent_dim": 4}, 0), data, cfg())


def test_secure_normal_draws_are_standard_normal_and_never_repeat():
    from scipy import stats

    z = dp.secure_normal(200_000)
    assert z.dtype == torch.float64 and z.shape == (200_000,)
    # mean and std of 200k N(0, 1) draws: standard errors 0.0022 and 0.0016
    assert abs(z.mean().item()) < 0.012 and abs(z.std().item() - 1) < 0.01
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-4  # the shape too, not just two moments
    assert not torch.equal(dp.secure_normal(8), dp.secure_normal(8))
    u = dp.secure_uniform(100_000)
    assert 0 <= u.min().item() and u.max().item() < 1 and abs(u.mean().item() - 0.5) < 0.006


def test_dp_randomness_is_secure_by_default_and_seeded_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(dp.SEEDED_ENV, raising=False)
    weights = []
    for run in ("a", "b"):  # the same seed, data and config twice
        model, data = toy()
        summary = Trainer(model, data, cfg(steps=4), out_dir=tmp_path / run).fit()
        weights.append(model.net[0].weight.detach().clone())
        assert summary["privacy"]["randomness"] == dp.SECURE
        assert json.loads((tmp_path / run / "privacy.json").read_text())["randomness"] == dp.SECURE
    assert not torch.equal(*weights)  # the seed does not decide the noise
    assert "drawn from os.urandom (secure)" in capsys.readouterr().err
    model, data = toy()
    privacy = dp.PrivateTraining(model, model.configure_optimizers(1e-2, 0.0), cfg(), len(data))
    assert not torch.equal(privacy.sample_rows(3), privacy.sample_rows(3))  # nor the Poisson batches
    privacy.detach()

    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    assert Trainer(toy()[0], data, cfg(steps=4), out_dir=tmp_path / "c").fit()["privacy"]["randomness"] == dp.SEEDED
    assert "NOT secure" in capsys.readouterr().err
    monkeypatch.setenv(dp.SEEDED_ENV, "maybe")
    with pytest.raises(GenzooError, match="must be 1"):
        dp.PrivateTraining(*(lambda m, d: (m, m.configure_optimizers(1e-2, 0.0), cfg(), len(d)))(*toy()))


def test_a_seeded_run_resumed_with_secure_noise_says_both(tmp_path, monkeypatch):
    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    model, data = toy()
    crash_at(model, 6)
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, data, cfg(), out_dir=tmp_path).fit()
    monkeypatch.delenv(dp.SEEDED_ENV)
    summary = Trainer(toy()[0], data, cfg(), out_dir=tmp_path).fit(resume=True)
    assert set(summary["privacy"]["randomness"].split(" + ")) == {dp.SECURE, dp.SEEDED}

"""The energy-based family: SGLD on known energies, the replay buffer across a resume, divergence
recovery in the Trainer, and that PCD and JEM learn (the conformance suite covers the contract)."""

from __future__ import annotations

import json

import pytest
import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.eval.toy2d import mmd2
from genzoo.sampling.langevin import clip_per_chain, langevin, long_run, short_run
from genzoo.train import Trainer, TrainConfig
from interrupt import at_step, crash_at

TOY = "toy2d:8gaussians"


def gaussian_energy(mean, std):
    mean, std = torch.tensor(mean), torch.tensor(std)
    return lambda x: (0.5 * ((x - mean) / std) ** 2).sum(1)


def seeded_noise(seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda x: torch.randn(x.shape, generator=g)


# ---- the sampler ---------------------------------------------------------------


def test_sgld_reproduces_a_gaussians_mean_and_variance():
    mean, std = [1.0, -2.0], [0.7, 1.0]
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    # step 0.01: the unadjusted chain's variance is std^2 / (1 - step / (2 std^2)), 1% high at std 0.7
    x = langevin(gaussian_energy(mean, std), x0, steps=2000, step_size=0.01, noise_like=seeded_noise(1))
    torch.testing.assert_close(x.mean(0), torch.tensor(mean), atol=0.04, rtol=0)
    torch.testing.assert_close(x.var(0) / torch.tensor(std) ** 2, torch.ones(2), atol=0.08, rtol=0)


def test_sgld_with_too_little_noise_is_too_narrow():
    """The check above can fail: noise sqrt(step) instead of sqrt(2 step) halves the variance."""
    x0 = torch.zeros(4000, 1)
    x = langevin(gaussian_energy([0.0], [1.0]), x0, steps=1500, step_size=0.01, noise=0.1, noise_like=seeded_noise(2))
    assert abs(float(x.var()) - 0.5) < 0.05


def test_gradient_clipping_inside_the_sampler_bounds_each_move():
    steep = gaussian_energy([0.0, 0.0], [1e-3, 1e-3])  # gradient 1e6 * x
    x0 = torch.ones(3, 2)
    clipped = langevin(steep, x0, steps=1, step_size=1.0, noise=0.0, grad_clip=0.1)
    torch.testing.assert_close((clipped - x0).norm(dim=1), torch.full((3,), 0.1))
    unclipped = langevin(steep, x0, steps=1, step_size=1.0, noise=0.0)
    assert unclipped.abs().min() > 1e5
    assert torch.equal(clip_per_chain(torch.tensor([[0.03, 0.04]]), 0.1), torch.tensor([[0.03, 0.04]]))


def test_chains_are_reproducible_and_short_and_long_runs_differ():
    energy = gaussian_energy([2.0], [0.3])
    x0 = torch.zeros(500, 1)
    a = short_run(energy, x0, noise_like=seeded_noise(3))
    assert torch.equal(a, short_run(energy, x0, noise_like=seeded_noise(3)))
    far = long_run(energy, x0, steps=2000, step_size=0.001, noise_like=seeded_noise(4))
    assert abs(float(far.mean()) - 2.0) < 0.05 and abs(float(far.std()) - 0.3) < 0.03
    with pytest.raises(ValueError):
        langevin(energy, x0, steps=1, step_size=0.0)


# ---- the model and the Trainer ---------------------------------------------------


def tiny_ebm(data, variant="pcd", **overrides):
    base = {"buffer_size": 64, "sgld_steps": 3, "sample_steps": 5}
    base.update({"hidden_widths": [16, 16]} if data.kind == "points" else {"conv_widths": [8, 16], "hidden_widths": [16]})
    return api.build_model("ebm", data, variant, {**base, **overrides}, seed=0)


def config(**changes) -> TrainConfig:
    base = dict(steps=6, batch_size=16, lr=1e-3, warmup_steps=1, ema_decay=None, val_every=0, progress=False,
                checkpoint_every=2, log_every=1, seed=0)
    return TrainConfig(**{**base, **changes})


def events(run_dir, name):
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return [r for r in rows if r.get("event") == name]


def test_replay_buffer_survives_an_interrupted_and_resumed_run(tmp_path):
    data = load_dataset(TOY, "train")
    straight = tiny_ebm(data)
    Trainer(straight, data, config()).fit()
    interrupted = tiny_ebm(data)
    crash_at(interrupted, 5)
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, data, config(), out_dir=tmp_path / "run").fit()
    saved = torch.load(tmp_path / "run" / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert saved["processes"][0]["model"]["replay_filled"].sum() > 0  # the buffer is in the checkpoint
    resumed = tiny_ebm(data)
    Trainer(resumed, data, config(), out_dir=tmp_path / "run").fit(resume=True)
    a, b = straight.training_state(), resumed.training_state()
    assert torch.equal(a["replay_filled"], b["replay_filled"]) and torch.equal(a["replay_buffer"], b["replay_buffer"])
    # 6 steps of 16 chains with 5% restarts: most slots of a (16 x 4) buffer have been visited
    assert a["replay_filled"].sum() >= 16


def _raise_once(model, step):
    fired = []

    def diverge():
        if not fired:
            fired.append(step)
            raise FloatingPointError("forced divergence")

    at_step(model, step, diverge)


def test_a_divergence_restores_the_last_checkpoint_with_a_new_seed(tmp_path):
    data = load_dataset(TOY, "train")
    model = tiny_ebm(data)
    _raise_once(model, 5)
    trainer = Trainer(model, data, config(divergence_retries=2), out_dir=tmp_path / "run")
    trainer.fit()
    (event,) = events(tmp_path / "run", "diverged")
    assert event["diverged_at"] == 5 and event["step"] == 4 and event["new_seed"] == 1009 and event["retry"] == 1
    assert trainer.step == 6 and trainer.config.seed == 1009

    # The same as continuing the step-4 checkpoint under seed 1009 by hand: restored exactly.
    by_hand = tiny_ebm(data)
    crash_at(by_hand, 5)
    with pytest.raises(KeyboardInterrupt):
        Trainer(by_hand, data, config(), out_dir=tmp_path / "by_hand").fit()
    state_file = tmp_path / "by_hand" / "checkpoint" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=False)
    torch.save({**state, "seed": 1009}, state_file)
    by_hand = tiny_ebm(data)
    Trainer(by_hand, data, config(), out_dir=tmp_path / "by_hand").fit(resume=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, by_hand.state_dict()[k]), k
    assert torch.equal(model.training_state()["replay_buffer"], by_hand.training_state()["replay_buffer"])


def test_the_ebm_reports_exploding_energies_and_retries_are_capped(tmp_path):
    data = load_dataset(TOY, "train")
    with pytest.raises(GenzooError, match="still diverging after 2 restore"):
        Trainer(tiny_ebm(data, divergence_energy=1e-9), data, config(divergence_retries=2), out_dir=tmp_path / "run").fit()
    assert [e["new_seed"] for e in events(tmp_path / "run", "diverged")] == [1009, 2018]
    with pytest.raises(GenzooError, match="training diverged"):  # recovery off: a clear stop
        Trainer(tiny_ebm(data, divergence_energy=1e-9), data, config()).fit()


def test_pcd_learns_8gaussians():
    torch.manual_seed(0)
    data = load_dataset(TOY, "train")
    model = tiny_ebm(data, hidden_widths=[64, 64], buffer_size=1000, sgld_steps=20, sample_steps=100)
    assert model.config.sgld_noise is None  # toy2d's default: true Langevin
    test = load_dataset(TOY, "test").x[:1000]

    def score(m):
        return mmd2(m.sample(1000, generator=torch.Generator().manual_seed(1)), test)

    untrained = score(model)
    Trainer(model, data, config(steps=400, batch_size=128, lr=2e-3, checkpoint_every=1000, log_every=50)).fit()
    trained = score(model)
    assert trained < 0.5 * untrained, (trained, untrained)


def test_jem_classifies_digits_above_chance():
    data = load_dataset("digits", "train")
    model = tiny_ebm(data, "jem", conv_widths=[16, 32], hidden_widths=[64], sgld_steps=2)
    assert model.config.num_classes == 10
    Trainer(model, data, config(steps=80, batch_size=32, lr=1e-3, checkpoint_every=1000, log_every=50)).fit()
    test = load_dataset("digits", "test")
    accuracy = (model.classify(test.x).argmax(1) == test.y).float().mean().item()
    assert accuracy > 0.6, accuracy
    samples = model.sample(4, condition=3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 8, 8)
    with pytest.raises(GenzooError):
        tiny_ebm(data).classify(test.x[:2])  # the plain EBM is no classifier


def test_bad_settings_are_refused_clearly():
    data = load_dataset(TOY, "train")
    with pytest.raises(GenzooError, match="reinit_share"):
        tiny_ebm(data, reinit_share=1.5)
    with pytest.raises(GenzooError, match="init"):
        tiny_ebm(data).sample(2, init="buffer")
    with pytest.raises(GenzooError, match="divergence_retries"):
        config(divergence_retries=-1)

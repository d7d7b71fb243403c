"""WaveNet: causality, a normalized exact likelihood, cached generation equal to the plain network, training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genzoo.core.errors import GenzooError
from genzoo.models.base import Batch, BatchRandom
from genzoo.models.wavenet import WaveNet, WaveNetConfig


def tiny(levels=256, length=64, num_classes=3, **kw) -> WaveNet:
    torch.manual_seed(0)
    spec = {"name": "toy", "kind": "audio", "shape": [1, length], "levels": levels, "num_classes": num_classes, "sample_rate": 8000}
    cfg = WaveNetConfig(data=spec, channels=8, skip_channels=8, stacks=2, layers_per_stack=3, num_classes=num_classes, crop=32, **kw)
    model = WaveNet(cfg).eval()
    with torch.no_grad():  # random, non-trivial weights everywhere (the zero-free init is already random)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_output_at_t_ignores_inputs_at_and_after_t():
    model = tiny()
    x = torch.randint(0, 256, (2, 1, 64)).float()
    y = torch.tensor([0, 2])
    base = model.logits(x, y)
    for t in (0, 10, 40, 63):
        changed = x.clone()
        changed[..., t:] = torch.randint(0, 256, changed[..., t:].shape).float()
        out = model.logits(changed, y)
        assert torch.equal(out[..., : t + 1], base[..., : t + 1]), t  # logits up to t read x_<t only
        if t < 63:
            assert not torch.allclose(out[..., t + 1 :], base[..., t + 1 :])  # and they do read the past


def test_log_prob_is_a_normalized_distribution_on_a_tiny_case():
    model = tiny(levels=4, length=3, num_classes=2)
    seqs = torch.tensor(list(itertools.product(range(4), repeat=3))).float().unsqueeze(1)  # all 64 clips
    for condition in (0, 1, None):  # None: the uniform class mixture
        total = torch.logsumexp(model.log_prob(seqs, condition=condition), 0)
        assert abs(total.item()) < 1e-5, condition


def test_cached_generation_equals_the_plain_network():
    model = tiny(length=40)
    a = model.sample(3, condition=[0, 1, 2], generator=torch.Generator().manual_seed(5))
    b = model.sample(3, condition=[0, 1, 2], generator=torch.Generator().manual_seed(5), cache=False)
    assert torch.equal(a, b) and a.shape == (3, 1, 40)
    assert len(a.unique()) > 5  # actually random, not a constant
    # the log-likelihood of what was drawn is consistent with the samples' own logits (exactness)
    assert torch.isfinite(model.log_prob(a, condition=[0, 1, 2])).all()


def test_loss_is_nats_per_sample_and_bits_line_up_at_initialisation():
    model = tiny(num_classes=0)
    x = torch.randint(0, 256, (4, 1, 64)).float()
    loss = model.loss(Batch(x, None, BatchRandom(0, 0, 4, 0)))
    assert 0 < loss.item() < 30
    # the whole-clip NLL per sample equals the loss when the crop is the whole clip
    full = WaveNet(WaveNetConfig(**{**model.config.to_dict(), "crop": 64}))
    full.load_state_dict(model.state_dict())
    full_loss = full.loss(Batch(x, None, BatchRandom(0, 0, 4, 0)))
    nll = -full.log_prob(x).mean() / 64
    assert math.isclose(full_loss.item(), nll.item(), rel_tol=1e-5)


def test_training_lowers_the_nll_of_a_learnable_signal():
    torch.manual_seed(0)
    spec = {"name": "toy", "kind": "audio", "shape": [1, 64], "levels": 256, "num_classes": 0}
    model = WaveNet(WaveNetConfig(data=spec, channels=16, skip_channels=16, stacks=1, layers_per_stack=4, crop=64))
    t = torch.arange(64)
    x = ((torch.sin(t[None] * 0.4 + torch.rand(32, 1) * 6) * 0.8 + 1) * 127.5).round().clamp(0, 255).unsqueeze(1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for step in range(60):
        loss = model.loss(Batch(x, None, BatchRandom(0, step, 32, 0)))
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.5  # nats per sample: well below the uniform 5.55


def test_refuses_data_that_is_not_mono_levels():
    with pytest.raises(GenzooError, match="mu-law"):
        WaveNet(WaveNetConfig(data={"kind": "image", "shape": [1, 8, 8], "levels": 17}))
    model = tiny(num_classes=0)
    with pytest.raises(GenzooError, match="class conditioning"):
        model.sample(2, condition=3)

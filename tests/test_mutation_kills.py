"""Direct known-answer tests for bugs that a mutation-testing audit planted one at a time and that
passed every other test: each test here names the planted bug it fails on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genzoo import api
from genzoo.data import load_dataset
from genzoo.models import gan as gan_module
from genzoo.models.base import Batch, BatchRandom
from genzoo.models.gan import gradient_penalty
from genzoo.nn.lora import LoRALinear
from genzoo.store import graph
from genzoo.store.api import Store
from genzoo.store.redact import redact
from genzoo.store.vectors import VectorIndex
from genzoo.tasks.encoders import HashingEncoder

TOY = "toy2d:8gaussians"


class _NoUpdate:
    """An ``Updater`` stand-in for calling ``training_step`` directly: it records, never steps."""

    def __init__(self):
        self.steps = []

    def step(self, name, loss):
        self.steps.append((name, float(loss.detach())))


# ---- 1. PII redaction: e-mails in any case --------------------------------------------------------


@pytest.mark.parametrize("email", ["John.Doe@Example.COM", "JANE@EXAMPLE.ORG", "x.Y_z+Tag@Mail.Example.Co.UK"])
def test_upper_and_mixed_case_emails_are_redacted(email):
    """Kills: the e-mail pattern matching lower case only. Known answer: the whole address, whatever
    its case, becomes one <EMAIL> finding spanning exactly the address."""
    text = f"write to {email} today"
    r = redact(text)
    assert r.text == "write to <EMAIL> today"
    start = text.index(email)
    assert [(f.kind, f.start, f.end) for f in r.findings] == [("email", start, start + len(email))]


# ---- 2. filtered vector search filters before ranking ------------------------------------------


def _ranked_index(n_other=90, n_match=10, dim=4):
    """One segment (same kind, family, visibility, synthetic): rows 1..n_other belong to owner 1 and
    point almost exactly along the query; rows after that belong to owner 2 and point away from it."""
    q = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    rng = np.random.default_rng(0)
    close = np.tile(q, (n_other, 1)) + 0.01 * rng.normal(size=(n_other, dim)).astype(np.float32)
    far = np.tile(-q, (n_match, 1)) + np.linspace(0, 0.5, n_match, dtype=np.float32)[:, None] * np.array([0, 1, 0, 0], np.float32)
    vecs = np.concatenate([close, far]).astype(np.float32)
    owners = [1] * n_other + [2] * n_match
    meta = [dict(owner_id=o, visibility="private", model_id=None, family="f", kind="text", created_at=float(i), synthetic=0)
            for i, o in enumerate(owners)]
    index = VectorIndex()
    index.add(list(range(1, len(vecs) + 1)), vecs, meta)
    assert len(index.segments) == 1  # the filter is a mask inside one segment, not a choice of segments
    return index, q, vecs


@pytest.mark.parametrize("filters", [dict(viewer=None, owner_id=2), dict(viewer=2)])
def test_a_filtered_search_returns_every_matching_row_even_when_they_rank_last(filters):
    """Kills: the top k taken before the filter (the k nearest rows are all owner 1's, so filtering
    them afterwards leaves nothing or a few). Known answer: owner 2 has exactly 10 rows (ids 91-100),
    the 10 lowest-ranked of 100, and a filtered k=10 search returns all 10, best (least anti-aligned)
    first, with their exact cosines."""
    index, q, vecs = _ranked_index()
    hits = index.search(q, 10, index.mask(**filters))
    normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    expect = sorted(range(91, 101), key=lambda gid: (-float(normed[gid - 1] @ q), gid))
    assert [gid for gid, _ in hits] == expect
    np.testing.assert_allclose([s for _, s in hits], [normed[gid - 1] @ q for gid in expect], rtol=1e-5)
    assert len(index.search(q, 25, index.mask(**filters))) == 10  # k above the matches: all of them, no more
    few = index.search(q, 3, index.mask(**filters))  # k below the matches: the best 3 of them
    assert [gid for gid, _ in few] == expect[:3]


def test_a_filtered_search_with_many_matches_still_ranks_only_matching_rows():
    """Kills the same bug on the other scoring path (more than half the rows kept: score the whole
    slice, then pick). Known answer: 60 of 100 rows match; the 10 nearest rows overall are others',
    so a k=10 search returns 10 matching rows, namely the 10 nearest of the matching ones."""
    index, q, vecs = _ranked_index(n_other=40, n_match=60)
    hits = index.search(q, 10, index.mask(viewer=None, owner_id=2))
    normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    expect = sorted(range(41, 101), key=lambda gid: (-float(normed[gid - 1] @ q), gid))[:10]
    assert [gid for gid, _ in hits] == expect


# ---- 3. LoRA scales its update by alpha / rank ------------------------------------------------------


def test_lora_output_is_base_plus_alpha_over_rank_times_b_a_x():
    """Kills: the update scaled by alpha instead of alpha / rank. Known answer with rank 2, alpha 6
    (scale 3): W x + b + 3 B A x, computed by hand in float64, exactly (also via delta_weight and merging)."""
    base = nn.Linear(3, 2).double()
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]]))
        base.bias.copy_(torch.tensor([0.5, -0.5]))
    layer = LoRALinear(base, rank=2, alpha=6.0)
    A = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]], dtype=torch.float64)  # (rank, in)
    B = torch.tensor([[1.0, 0.0], [1.0, -1.0]], dtype=torch.float64)  # (out, rank)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    x = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]], dtype=torch.float64)
    # W x + b: [3.5, -0.5], [2.5, -1.5]; A x: [2, 2], [1, 0]; B A x: [2, 0], [1, 1]
    expected = torch.tensor([[3.5 + 3 * 2, -0.5 + 3 * 0], [2.5 + 3 * 1, -1.5 + 3 * 1]], dtype=torch.float64)
    assert layer.scale == 3.0
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(layer.delta_weight(), 3.0 * B @ A, rtol=0, atol=1e-12)
        torch.testing.assert_close(layer.merged()(x), expected, rtol=0, atol=1e-12)


# ---- 4. WGAN-GP's penalty at interpolates of real and fake ---------------------------------------


def test_gradient_penalty_of_half_squared_norm_is_known():
    """The penalty function itself: the critic f(x) = |x|^2 / 2 has gradient x, so the penalty is
    mean((|x| - 1)^2): for points of norm 3 and 0.5 it is ((3 - 1)^2 + (0.5 - 1)^2) / 2 = 2.125."""
    x = torch.tensor([[3.0, 0.0], [0.3, 0.4]], dtype=torch.float64)
    gp = gradient_penalty(lambda v: 0.5 * v.square().sum(1), x)
    assert gp.item() == pytest.approx(2.125, abs=1e-12)


def test_wgan_gp_penalises_the_critic_at_interpolates_of_real_and_fake(monkeypatch):
    """Kills: the penalty evaluated at the fakes instead of at interpolates x_hat = eps real + (1 - eps) fake.
    Known answer: every row of the point the penalty sees lies on the segment from its fake (eps = 0)
    to its real example (eps = 1) with eps in [0, 1], and the eps differ from 0 (they are uniform draws);
    the penalty returned is the true one at those points."""
    data = load_dataset(TOY, "train")
    model = api.build_model("gan", data, "wgan-gp", {"mlp_width": 16, "mlp_depth": 2, "latent_dim": 4, "critic_steps": 1}, seed=0)
    seen, fakes = [], []
    original_generate = model.generate

    def generate(z, y=None):
        out = original_generate(z, y)
        fakes.append(out.detach().clone())
        return out

    def spy(critic, x_hat, *args, **kw):
        seen.append(x_hat.detach().clone())
        return gradient_penalty(critic, x_hat, *args, **kw)

    monkeypatch.setattr(model, "generate", generate)
    monkeypatch.setattr(gan_module, "gradient_penalty", spy)
    real = data.x[:64].clone()
    metrics = model.training_step(Batch(real, None, BatchRandom(0, 0, 64, 0)), 0, _NoUpdate())
    assert len(seen) == 1 and "gp" in metrics
    x_hat, fake = seen[0], fakes[0]  # the first generate call makes the critic step's fakes
    direction = real - fake
    eps = (x_hat - fake).mul(direction).sum(1) / direction.square().sum(1)
    torch.testing.assert_close(x_hat, fake + eps[:, None] * direction, rtol=0, atol=1e-5)  # on the line through both
    assert bool(((eps >= -1e-6) & (eps <= 1 + 1e-6)).all())  # between them
    assert float(eps.min()) < 0.3 and float(eps.max()) > 0.7 and float((eps - 0.5).abs().mean()) < 0.4  # uniform, not a constant
    assert float((x_hat - fake).abs().max()) > 0.1  # not the fakes themselves


# ---- 5. graph visibility of prompts --------------------------------------------------------------


def test_a_reader_sees_another_users_prompt_only_through_a_shared_generation(tmp_path):
    """Kills: a prompt made visible through any generation rather than shared ones. Known answer: wes's
    prompt behind only his private generation is invisible to reader rob (graph.visible False, and
    graph.edges refuses it); his prompt behind a shared generation is visible, and to wes both are."""
    db = tmp_path / "store.db"
    with Store.open(db, encoder=HashingEncoder()) as admin:
        _, wkey = admin.create_user("wes", "writer")
        _, rkey = admin.create_user("rob", "reader")
    with Store.open(db, api_key=wkey, encoder=HashingEncoder()) as wes:
        private = wes.record(kind="text", prompt="my secret plan for the launch", text="private answer", visibility="private")
        shared = wes.record(kind="text", prompt="a public question about parsing", text="shared answer", visibility="shared")
        private_prompt, shared_prompt = wes.get(private).prompt_id, wes.get(shared).prompt_id
        assert private_prompt != shared_prompt
        assert graph.visible(wes, ("prompt", private_prompt)) and graph.visible(wes, ("prompt", shared_prompt))
    with Store.open(db, api_key=rkey, encoder=HashingEncoder()) as rob:
        assert not graph.visible(rob, ("prompt", private_prompt))
        assert graph.visible(rob, ("prompt", shared_prompt))
        with pytest.raises(Exception, match="not visible"):
            graph.edges(rob, ("prompt", private_prompt))
        assert [e.dst for e in graph.edges(rob, ("prompt", shared_prompt), "out")] == [("generation", shared)]


# ---- 6. the EBM replay buffer restarts a share of its chains ---------------------------------------


SENTINEL = 0.123  # every buffer slot holds this point; fresh chains are uniform draws, never exactly it


def _chain_starts(reinit_share: float, n: int = 400) -> torch.Tensor:
    """Which of n chains started from noise at one training step with a full buffer (depth 1)."""
    data = load_dataset(TOY, "train")
    model = api.build_model("ebm", data, "pcd", {"buffer_size": n, "sgld_steps": 1, "hidden_widths": [8],
                                                 "reinit_share": reinit_share}, seed=0)
    buffer = torch.full((n, 1, *model.shape), SENTINEL)
    model.load_training_state({"replay_buffer": buffer, "replay_filled": torch.ones(n, 1, dtype=torch.bool)})
    starts = []
    original = model._sgld

    def spy(x0, *args, **kw):
        starts.append(x0.detach().clone())
        return original(x0, *args, **kw)

    model._sgld = spy
    metrics = model.training_step(Batch(data.x[:n].clone(), None, BatchRandom(0, 0, n, 0)), 0, _NoUpdate())
    (x0,) = starts
    fresh = ~(x0 == SENTINEL).all(1)
    assert metrics["restarts"] == pytest.approx(fresh.float().mean().item())
    return fresh


@pytest.mark.parametrize("share, low, high", [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.05, 0.01, 0.12), (0.5, 0.4, 0.6)])
def test_the_replay_buffer_restarts_the_configured_share_of_chains(share, low, high):
    """Kills: a replay buffer that never re-initialises. Known answer with every slot filled: reinit_share
    1 restarts all 400 chains from noise, 0 none, and 0.05 / 0.5 about that share (fixed seed; binomial
    sd 1.1% / 2.5%, bounds wider than 3 sd)."""
    fresh = _chain_starts(share)
    assert low <= fresh.float().mean().item() <= high

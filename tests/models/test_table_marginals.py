"""keep_marginals: a sampling temperature sharpens each row's one-hot blocks, and the per-block bias
from ``TableModel.marginal_biases`` keeps every block's share at the model's own (T = 1) share."""

import numpy as np
import pandas as pd
import pytest
import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.models import tabular


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained tiny tvae on a skewed table: its decoder's softmax is far from one-hot, so a low
    temperature moves the shares a lot (the control below)."""
    r = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"kind": r.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]), "x": np.round(r.normal(0, 1, n), 2)})
    path = tmp_path_factory.mktemp("marg") / "skewed.csv"
    frame.to_csv(path, index=False)
    data = load_dataset(f"{path}#target=kind", "train")
    return api.build_model("tvae", data, None, {"latent_dim": 4, "hidden_widths": [16]}, seed=0).eval()


def shares_on_the_bias_draws(model, t, biases):
    """Each block's share over the very draws of z that ``marginal_biases`` fits on."""
    z = torch.randn(tabular.MARGINAL_DRAWS, model.config.latent_dim, generator=torch.Generator().manual_seed(tabular.MARGINAL_SEED))
    raw = model.decode_raw(z).double()
    return {s: torch.softmax(raw[:, s : s + w] / t + (biases[s] if biases else 0), 1).mean(0) for s, w in model.onehot_blocks()}


@pytest.mark.parametrize("t", [0.1, 0.3, 2.0])
def test_biases_give_every_block_its_t1_share(model, t):
    with torch.no_grad():
        target = shares_on_the_bias_draws(model, 1.0, None)
        kept = shares_on_the_bias_draws(model, t, model.marginal_biases(model.decode_raw, model.config.latent_dim, t))
        moved = shares_on_the_bias_draws(model, t, None)
    assert max((kept[s] - target[s]).abs().max().item() for s in target) < 1e-5
    assert max((moved[s] - target[s]).abs().max().item() for s in target) > 0.02  # the control: T alone moves them


def test_samples_keep_the_category_shares(model):
    """20,000 rows at T = 0.3: the category shares stay at T = 1's with keep_marginals (within
    sampling error) and move towards the majority without it."""
    def shares(**kw):
        with torch.no_grad():
            x = model.sample(20_000, generator=torch.Generator().manual_seed(1), **kw)
        s, w = next((s, w) for kind, s, w, c in model.blocks if kind == "category")
        return x[:, s : s + w].argmax(1).bincount(minlength=w).double() / len(x)

    t1 = shares(temperature=1.0)
    kept, moved = shares(temperature=0.3), shares(temperature=0.3, keep_marginals=False)
    assert (kept - t1).abs().max() < 0.02, (kept, t1)  # ~3 sd of two 20,000-row draws and the 8,192 fitting draws
    assert (moved - t1).abs().max() > 0.05, (moved, t1)
    assert torch.equal(shares(temperature=1.0, keep_marginals=False), t1)  # T = 1 needs no bias


def test_biases_follow_the_weights(model):
    """Cached per temperature, and fitted again once a training step changes the weights."""
    with torch.no_grad():
        first = model.marginal_biases(model.decode_raw, model.config.latent_dim, 0.3)
        assert model.marginal_biases(model.decode_raw, model.config.latent_dim, 0.3) is first
        assert model.marginal_biases(model.decode_raw, model.config.latent_dim, 0.5) is not first
        before = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            next(model.decoder.parameters()).add_(0.5)  # in place, as an optimizer step is
            again = model.marginal_biases(model.decode_raw, model.config.latent_dim, 0.3)
        finally:
            model.load_state_dict(before)
    assert any(not torch.allclose(first[s], again[s]) for s in first)


def test_keep_marginals_refuses_what_is_not_true_or_false(model):
    from genzoo.core.errors import GenzooError

    with pytest.raises(GenzooError, match="keep_marginals must be true or false"):
        model.sample(4, keep_marginals="maybe")  # what `--opt keep_marginals=maybe` hands over

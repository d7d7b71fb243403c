"""Membership-inference attacks (genzoo.eval.privacy) on known answers: a model that replays or memorized its
training set is caught (AUC >= 0.9), one independent of it is not (AUC near 0.5)."""

import numpy as np
import pytest
import torch

from genzoo.core.errors import GenzooError
from genzoo.data import load_dataset
from genzoo.eval.privacy import (attack_model, attack_scores, format_attack, membership_inference_distance,
                                 membership_inference_loss)
from genzoo.models.base import LOG_PROB, SAMPLE


def gaussian_rows(seed, n=400, d=6):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_a_sampler_that_replays_its_training_rows_is_caught():
    train, holdout = gaussian_rows(0), gaussian_rows(1)
    r = membership_inference_distance(train, holdout, train[np.random.default_rng(2).permutation(400)])
    assert r["auc"] >= 0.99 and r["tpr_at_1pct_fpr"] >= 0.9
    assert r["n_members"] == r["n_nonmembers"] == 400 and r["median_dcr_members"] == 0.0
    near = membership_inference_distance(train, holdout, train + 0.05 * gaussian_rows(3))  # copies with a little noise
    assert near["auc"] >= 0.9


def test_a_sampler_independent_of_the_training_rows_is_not():
    train, holdout = gaussian_rows(0), gaussian_rows(1)
    r = membership_inference_distance(train, holdout, gaussian_rows(4, n=1000))
    assert abs(r["auc"] - 0.5) < 0.07 and r["tpr_at_1pct_fpr"] < 0.08
    lo, hi = r["auc_ci95"]
    assert lo < 0.5 < hi or abs(r["auc"] - 0.5) < 0.03  # the interval covers chance
    with_ref = membership_inference_distance(train, holdout, gaussian_rows(4, n=1000), reference=gaussian_rows(5))
    assert abs(with_ref["auc"] - 0.5) < 0.07


def test_unequal_sets_are_cut_to_equal_numbers_and_bad_input_is_refused():
    r = membership_inference_distance(gaussian_rows(0, n=900), gaussian_rows(1, n=300), gaussian_rows(2))
    assert r["n_members"] == r["n_nonmembers"] == 300
    with pytest.raises(GenzooError, match="as many features"):
        membership_inference_distance(gaussian_rows(0), gaussian_rows(1, d=5), gaussian_rows(2))
    with pytest.raises(GenzooError, match="NaN"):
        attack_scores([0.1, np.nan, 0.3], [0.2, 0.4, 0.5])
    assert "AUC" in format_attack(r) and "chance 0.5" in format_attack(r)


def kde_log_prob(points: np.ndarray, bandwidth: float):
    """log-density of a Gaussian KDE on ``points``: a "model" that memorized them when the bandwidth is small."""
    ref = torch.as_tensor(points, dtype=torch.float64).reshape(len(points), -1)

    def log_prob(x):
        x = torch.as_tensor(x, dtype=torch.float64).reshape(len(x), -1)
        d2 = torch.cdist(x, ref).square()
        return torch.logsumexp(-d2 / (2 * bandwidth**2), 1)  # constants dropped: the ranking is what counts

    return log_prob


def test_loss_attack_catches_an_overfit_model_and_not_one_trained_on_other_data():
    train, holdout, other = gaussian_rows(0, d=10), gaussian_rows(1, d=10), gaussian_rows(2, d=10)
    overfit = kde_log_prob(train, 0.3)
    r = membership_inference_loss(overfit(train), overfit(holdout))
    assert r["auc"] >= 0.9
    elsewhere = kde_log_prob(other, 0.3)
    r = membership_inference_loss(elsewhere(train), elsewhere(holdout))
    assert abs(r["auc"] - 0.5) < 0.08
    # the likelihood ratio against a reference model (trained on other data) still catches the overfit one
    r = membership_inference_loss(overfit(train), overfit(holdout), reference_member_log_probs=elsewhere(train),
                                  reference_nonmember_log_probs=elsewhere(holdout))
    assert r["auc"] >= 0.9 and "reference" in r["attack"]


class FakeModel(torch.nn.Module):
    """Samples and scores from a fixed set of digits: the training split (memorizer) or the val split."""

    family = "fake"
    capabilities = frozenset({SAMPLE, LOG_PROB})

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.rows = rows
        self._kde = kde_log_prob(rows.numpy(), 1.0)

    def sample(self, n, *, generator=None):  # every row once before any repeats (drawn with replacement, ~37% never show)
        return self.rows[torch.randperm(len(self.rows), generator=generator).repeat(n // len(self.rows) + 1)[:n]]

    def log_prob(self, x):
        return self._kde(x)


def test_attack_model_on_digits_known_answers():
    train, val = load_dataset("digits", "train").x, load_dataset("digits", "val").x
    memorizer = attack_model(FakeModel(train), "digits", n_synthetic=1000)
    assert [r["attack"].split()[0] for r in memorizer] == ["LOSS", "distance"]
    assert all(r["auc"] >= 0.9 for r in memorizer), memorizer
    independent = attack_model(FakeModel(val), "digits", n_synthetic=1000)
    assert all(abs(r["auc"] - 0.5) < 0.1 for r in independent), independent
    assert len(attack_model(FakeModel(train), "digits", likelihood=False, n_synthetic=300)) == 1
    with_ref = attack_model(FakeModel(train), "digits", n_synthetic=300, reference=FakeModel(val))
    assert with_ref[1]["attack"].startswith("likelihood ratio") and with_ref[1]["auc"] >= 0.9


def test_attack_model_refuses_text_clearly():
    model = FakeModel(torch.zeros(3, 2))
    model.data_spec = {"kind": "tokens"}
    with pytest.raises(GenzooError, match="token stream"):
        attack_model(model, "pydocs")

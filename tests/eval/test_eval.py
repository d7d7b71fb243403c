"""genzoo.eval: metrics against closed forms and known answers, the evaluator, and evaluate()."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from genzoo.data import dequantize, from_signed_unit, load_dataset
from genzoo.core.errors import GenzooError
from genzoo.eval import (
    bits_per_dim_to_nats,
    class_coverage,
    class_histogram,
    class_kl,
    discrete_log_prob_bound,
    evaluate,
    format_report,
    frechet_distance,
    frechet_distance_from_stats,
    get_digits_evaluator,
    mmd2,
    nats_to_bits_per_dim,
    prdc,
    summarize_nll,
)
from genzoo.eval import evaluator as evaluator_module
from genzoo.models.base import GenerativeModel, ModelConfig

# ---- Frechet distance ----------------------------------------------------------


def test_frechet_of_identical_sets_is_zero():
    f = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def test_frechet_matches_closed_form_for_gaussian_statistics():
    # Diagonal covariances commute: tr(Sa + Sb - 2 sqrt(Sa Sb)) = sum (sqrt(a) - sqrt(b))^2.
    mu_a, mu_b = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    cov_a, cov_b = np.diag([1.0, 4.0]), np.diag([4.0, 9.0])
    expected = (9 + 4) + (1 - 2) ** 2 + (2 - 3) ** 2
    assert frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-9)
    # Non-commuting covariances: compare with tr sqrt(Sa^1/2 Sb Sa^1/2) from eigenvalues.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    w, v = np.linalg.eigh(cov_a)
    root_a = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a)).sum()
    expected = np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    assert frechet_distance_from_stats(np.zeros(5), cov_a, np.zeros(5), cov_b) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_gaussian_samples_approaches_closed_form():
    g = torch.Generator().manual_seed(2)
    shift = torch.tensor([2.0, 0.0, -1.0])
    a = torch.randn(20000, 3, generator=g)
    b = 2 * torch.randn(20000, 3, generator=g) + shift  # N(shift, 4 I)
    expected = shift.square().sum().item() + 3 * (1 + 4 - 2 * 2)  # = 5 + 3
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.05)


def test_frechet_is_symmetric_and_handles_singular_covariances():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(300, 8, generator=g), torch.randn(200, 8, generator=g) + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    a[:, 0] = 0.0  # a dead feature: singular covariance
    assert math.isfinite(frechet_distance(a, b))


# ---- precision / recall / density / coverage -------------------------------------


def test_prdc_of_identical_sets():
    f = torch.randn(300, 10, generator=torch.Generator().manual_seed(4))
    scores = prdc(real=f, fake=f, k=5)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["coverage"] == 1.0
    assert 0.8 < scores["density"] < 1.5


def test_prdc_of_far_apart_sets_is_zero():
    g = torch.Generator().manual_seed(5)
    real, fake = torch.randn(200, 10, generator=g), torch.randn(200, 10, generator=g) + 100.0
    assert prdc(real, fake) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_separates_fidelity_from_diversity():
    g = torch.Generator().manual_seed(6)
    real = torch.randn(500, 4, generator=g)
    collapsed = 0.05 * torch.randn(500, 4, generator=g)  # all samples near one real mode
    scores = prdc(real, collapsed)
    assert scores["precision"] > 0.9  # every sample looks real
    assert scores["recall"] < 0.2 and scores["coverage"] < 0.2  # but most of the data is missed


def test_prdc_on_a_hand_computed_example():
    # 1-D points; a ball's radius is the distance to the k-th nearest OTHER point of the same set.
    real = torch.tensor([[0.0], [1.0], [3.0], [7.0], [20.0]])
    fake = torch.tensor([[-5.0], [0.5], [2.2], [4.5]])
    # k=1: real radii 1, 1, 2, 4, 13; fake radii 5.5, 1.7, 1.7, 2.3.
    # precision: -5 is in no real ball; 0.5 (in 0's), 2.2 (in 3's), 4.5 (in 3's and 7's) are: 3/4.
    # recall: 0 (in -5's ball: 5 <= 5.5), 1, 3 are in fake balls; 7 (2.5 from 4.5 > 2.3) and 20 are not: 3/5.
    # density: real balls holding each fake: 0, 2 (0 and 1), 1 (3), 2 (3 and 7) -> 5/4 per fake, /k = 1.25.
    # coverage: real balls holding some fake: 0, 1, 3, 7 (4.5 is 2.5 <= 4 away), not 20: 4/5.
    expected = {"precision": 0.75, "recall": 0.6, "density": 1.25, "coverage": 0.8}
    assert prdc(real, fake, k=1) == pytest.approx(expected, abs=1e-12)
    # k=2: real radii 3, 2, 3, 6, 17; fake radii 7.2, 4.0, 2.3, 4.0.
    # precision 3/4 (-5 still in no ball); recall 4/5 (7 is now in 4.5's ball, 2.5 <= 4.0; 20 in none);
    # density: 0 + 3 (0, 1, 3) + 4 (0, 1, 3, 7) + 3 (3, 7, 20) = 10 over 4 fakes, /k = 1.25;
    # coverage: every real ball holds a fake (20's reaches 4.5 at 15.5 <= 17): 1.
    expected = {"precision": 0.75, "recall": 0.8, "density": 1.25, "coverage": 1.0}
    assert prdc(real, fake, k=2) == pytest.approx(expected, abs=1e-12)


# ---- class metrics -----------------------------------------------------------------


def test_class_coverage_detects_a_collapsed_sample():
    balanced = torch.arange(1000) % 10
    assert class_coverage(balanced, 10) == 1.0
    assert class_coverage(torch.full((1000,), 3), 10) == pytest.approx(0.1)
    # the rule: a class needs >= 1/(2*10) = 5% of the samples; 4% does not count
    mostly_one = torch.cat([torch.full((960,), 0), torch.full((40,), 1)])
    assert class_coverage(mostly_one, 10) == pytest.approx(0.1)
    assert class_histogram(torch.full((10,), 3), 10)[3] == 1.0


def test_class_kl_is_zero_for_matching_mix_and_log10_for_collapse():
    balanced = torch.arange(1000) % 10
    assert class_kl(balanced, balanced, 10) == pytest.approx(0.0, abs=1e-12)
    assert class_kl(torch.full((1000,), 3), balanced, 10) == pytest.approx(math.log(10), abs=0.05)
    assert math.isfinite(class_kl(balanced, torch.full((100,), 3), 10))  # smoothing keeps it finite


# ---- likelihood units and the dequantization bound ---------------------------------


def test_bits_per_dim_conversion():
    assert nats_to_bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    assert bits_per_dim_to_nats(nats_to_bits_per_dim(123.4, 64), 64) == pytest.approx(123.4)
    s = summarize_nll(torch.tensor([1.0, 2.0, 3.0, 4.0]), dims=2)
    assert s["nats_per_example"] == pytest.approx(2.5)
    assert s["bits_per_dim"] == pytest.approx(2.5 / (2 * math.log(2)))
    assert s["std_err"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    with pytest.raises(GenzooError):
        summarize_nll(torch.tensor([1.0, float("nan")]), dims=2)


def test_dequantization_bound_is_exact_for_uniform_density():
    dims, levels = 64, 17
    log_uniform_density = -dims * math.log(2.0)  # uniform on [-1, 1]^64
    assert discrete_log_prob_bound(log_uniform_density, dims, levels) == pytest.approx(-dims * math.log(levels))


def test_dequantization_bound_recovers_a_discrete_distribution():
    # A density constant on each level's bin: Jensen is tight, so the bound equals log P(k).
    levels, dims = 5, 3
    probs = torch.tensor([0.1, 0.4, 0.2, 0.25, 0.05])
    g = torch.Generator().manual_seed(7)
    k = torch.multinomial(probs, 200 * dims, replacement=True, generator=g).view(200, dims).float()
    y = dequantize(k, levels, torch.rand(k.shape, generator=g))
    assert y.min() >= -1 and y.max() < 1
    bins = from_signed_unit(y, levels).long()
    assert torch.equal(bins, k.long())  # the noise keeps every point inside its own bin
    log_density = (probs[bins] * levels / 2).log().sum(1)  # bin width 2/L in [-1, 1]
    exact = probs[k.long()].log().sum(1)
    assert torch.allclose(discrete_log_prob_bound(log_density, dims, levels), exact, atol=1e-5)


# ---- the digits evaluator ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits_evaluator():
    return get_digits_evaluator()  # from $GENZOO_CACHE (~/.cache/genzoo) or trained once (~25 s)


def test_evaluator_is_accurate_and_deterministic(digits_evaluator):
    test = load_dataset("digits", "test")
    assert digits_evaluator.test_accuracy >= 0.95
    assert (digits_evaluator.predict(test.x) == test.y).double().mean().item() == pytest.approx(
        digits_evaluator.test_accuracy, abs=1e-6)
    f1, f2 = digits_evaluator.features(test.x), digits_evaluator.features(test.x.clone())
    assert f1.shape == (447, 128) and torch.equal(f1, f2)
    assert digits_evaluator.version.startswith("digits-cnn-")


def test_evaluator_training_is_reproducible_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    quick = evaluator_module.TrainSettings(epochs=1)
    assert quick.version() != evaluator_module.DEFAULT_SETTINGS.version()
    trained = get_digits_evaluator(quick)
    again, _ = evaluator_module.train_digits_cnn(quick)
    for name, value in trained.net.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    record = json.loads((tmp_path / "evaluators" / f"{quick.version()}.json").read_text())
    assert record["test_accuracy"] == trained.test_accuracy

    # A fresh process must load from disk, not retrain.
    monkeypatch.setattr(evaluator_module, "_LOADED", {})
    monkeypatch.setattr(evaluator_module, "train_digits_cnn", lambda s: pytest.fail("retrained despite cache"))
    loaded = get_digits_evaluator(quick)
    x = load_dataset("digits", "val").x[:50]
    assert torch.equal(loaded.features(x), trained.features(x))
    assert not list((tmp_path / "evaluators").glob("*.tmp"))


def test_evaluator_cache_with_mismatched_weights_retrains(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    quick = evaluator_module.TrainSettings(epochs=1, seed=3)
    get_digits_evaluator(quick)
    meta = tmp_path / "evaluators" / f"{quick.version()}.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "weights_sha256": "0" * 64}))
    monkeypatch.setattr(evaluator_module, "_LOADED", {})
    calls = []
    real_train = evaluator_module.train_digits_cnn
    monkeypatch.setattr(evaluator_module, "train_digits_cnn", lambda s: calls.append(s) or real_train(s))
    get_digits_evaluator(quick)
    assert len(calls) == 1


# ---- evaluate() on dummy models ----------------------------------------------------


class _DummyDigits(GenerativeModel):
    family = "dummy"
    capabilities = frozenset({"sample", "log_prob"})
    likelihood = "exact"

    def __init__(self):
        super().__init__(ModelConfig())
        self.pool = load_dataset("digits", "val")
        self.order, self.cursor = None, 0

    def sample(self, n, *, condition=None, generator=None, **options):
        """Rows of the val split in a random order, without repeats until the 350 are used up."""
        assert not self.training and not torch.is_grad_enabled()
        rows = []
        while len(rows) < n:
            if self.order is None or self.cursor == len(self.order):
                self.order, self.cursor = torch.randperm(len(self.pool), generator=generator), 0
            take = min(n - len(rows), len(self.order) - self.cursor)
            rows += self.order[self.cursor : self.cursor + take].tolist()
            self.cursor += take
        return self.pool.x[rows]

    def log_prob(self, x, **options):
        return torch.full((len(x),), -64 * math.log(17))  # uniform over the 17^64 images


class _NoiseDigits(_DummyDigits):
    def sample(self, n, *, condition=None, generator=None, **options):
        return torch.randint(0, 17, (n, 1, 8, 8), generator=generator).float()


class _CollapsedDigits(_DummyDigits):
    def sample(self, n, *, condition=None, generator=None, **options):
        sevens = self.pool.x[self.pool.y == 7]
        return sevens[torch.randint(len(sevens), (n,), generator=generator)]


def test_evaluate_digits_real_images_score_near_floor_and_noise_far_above(digits_evaluator):
    model = _DummyDigits().train()
    rng_before = torch.get_rng_state()
    real = evaluate(model, "digits", n_samples=300, seed=1)
    assert model.training  # mode restored
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    json.dumps(real)  # plain JSON values only
    assert real["floor_n"] == 300 and real["fd_digits_floor"] > 0
    assert real["fd_digits"] < 1.5 * real["fd_digits_floor"]
    assert real["precision"] > 0.7 and real["class_coverage"] == 1.0
    assert real["evaluator_test_accuracy"] == digits_evaluator.test_accuracy
    assert real["likelihood"] == "exact"
    assert real["nll_nats_per_image"] == pytest.approx(64 * math.log(17))
    assert real["nll_bits_per_dim"] == pytest.approx(math.log2(17))
    again = evaluate(_DummyDigits(), "digits", n_samples=300, seed=1, nll=False)
    assert again["fd_digits"] == real["fd_digits"]  # same seed, same samples, same score

    noise = evaluate(_NoiseDigits(), "digits", n_samples=300, nll=False)
    assert noise["fd_digits"] > 10 * noise["fd_digits_floor"]
    assert noise["fd_digits_floor"] == real["fd_digits_floor"]  # floors do not depend on the model or seed
    assert noise["coverage"] < 0.3 < real["coverage"]

    collapsed = evaluate(_CollapsedDigits(), "digits", n_samples=300, nll=False)
    assert collapsed["class_coverage"] == pytest.approx(0.1)
    assert collapsed["class_kl"] > 1.5 > 0.1 > real["class_kl"]

    table = format_report(real)
    assert "FD (digits features)" in table and "floor" in table and "test accuracy" in table


def test_evaluate_rejects_wrong_sample_shape():
    class Flat(_DummyDigits):
        def sample(self, n, *, condition=None, generator=None, **options):
            return torch.zeros(n, 64)

    with pytest.raises(GenzooError, match="shape"):
        evaluate(Flat(), "digits", n_samples=20, nll=False)


# ---- toy2d -------------------------------------------------------------------------


def test_mmd_is_near_zero_for_same_distribution_and_positive_for_different():
    moons_train, moons_test = load_dataset("toy2d:moons", "train").x, load_dataset("toy2d:moons", "test").x
    circles = load_dataset("toy2d:circles", "train").x
    same = mmd2(moons_train[:500], moons_test[:1000])
    different = mmd2(circles[:500], moons_test[:1000])
    assert abs(same) < 2e-3
    assert different > 1e-2 and different > 20 * abs(same)


def test_evaluate_toy2d_reports_mmd_floor_and_nll():
    val = load_dataset("toy2d:moons", "val").x

    class Replay(_DummyDigits):
        def sample(self, n, *, condition=None, generator=None, **options):
            return val[torch.randint(len(val), (n,), generator=generator)]

        def log_prob(self, x, **options):  # standard normal density
            return -0.5 * x.square().sum(1) - math.log(2 * math.pi)

    m = evaluate(Replay(), "toy2d:moons", n_samples=500)
    assert abs(m["mmd2"]) < 3e-3 and abs(m["mmd2_floor"]) < 3e-3
    test = load_dataset("toy2d:moons", "test").x
    expected = (0.5 * test.double().square().sum(1) + math.log(2 * math.pi)).mean().item()
    assert m["nll_nats_per_point"] == pytest.approx(expected, rel=1e-6)
    assert "MMD" in format_report(m)


def test_non_finite_samples_are_reported_and_the_likelihood_still_measured():
    import torch
    from torch import nn

    from genzoo.eval import evaluate

    class NaNSampler(nn.Module):
        family, capabilities, likelihood = "nan-sampler", frozenset({"sample", "log_prob"}), "exact"

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def sample(self, n, *, condition=None, generator=None, **_):
            return torch.full((n, 1, 8, 8), float("nan"))

        def log_prob(self, x, **_):
            return torch.full((len(x),), -100.0)

    m = evaluate(NaNSampler(), "digits", n_samples=20)
    assert "NaN" in m["sample_error"] and "fd_digits" not in m
    assert abs(m["nll_nats_per_image"] - 100.0) < 1e-6

"""genzoo.eval.memorization: exact copies, nearest-training-neighbour shares and the C_T test."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from genzoo.data import load_dataset
from genzoo.eval.memorization import (
    DEFAULT_CELLS,
    MemorizationReference,
    assign_cells,
    c_t_from_cells,
    c_t_statistic,
    closer_than_heldout_share,
    exact_copy_share,
    kmeans,
    mann_whitney_z,
    memorization_floor,
    memorization_metrics,
    nn_distances,
)


@pytest.fixture(scope="module")
def digits():
    train, val, test = (load_dataset("digits", s).x for s in ("train", "val", "test"))
    return train, val, test


@pytest.fixture(scope="module")
def reference(digits):
    train, _, test = digits
    return MemorizationReference(train, test)  # 1000 train, 447 test held out


def test_replayed_training_images_are_flagged(digits, reference):
    train = digits[0]
    replay = train[torch.randint(len(train), (1000,), generator=torch.Generator().manual_seed(0))]
    m = reference.metrics(replay)
    assert m["copy_exact_share"] == 1.0
    assert m["copy_nn_below_p5_share"] == 1.0 and m["copy_nn_median"] == 0.0
    assert m["copy_ct"] < -10  # measured -13.9 with 5 cells; real data stays within about +-1.5
    assert m["copy_ct_cells"] == DEFAULT_CELLS


def test_held_out_real_images_are_not_flagged(digits, reference):
    val = digits[1]  # 350 images never trained on
    m = reference.metrics(val)
    assert m["copy_exact_share"] == 0.0
    # Binomial sd of a 5% share over 350 samples is 0.012, the p5 estimate from 447 test images adds 0.010:
    # 3 sd of both is 0.047. Measured: 0.091 (val sits a little nearer train than test does).
    assert abs(m["copy_nn_below_p5_share"] - 0.05) < 0.05
    # C_T of real data: roughly N(0, 1/cells) by construction; measured +0.34 (+0.16..+0.34 over k-means seeds)
    assert abs(m["copy_ct"]) < 1.5
    assert m["copy_ct_cells"] == DEFAULT_CELLS  # 350 images fill every cell past 20


def test_uniform_noise_reads_as_underfitting_not_copying(digits, reference):
    noise = torch.randint(0, 17, (1000, 1, 8, 8), generator=torch.Generator().manual_seed(1)).float()
    m = reference.metrics(noise)
    assert m["copy_exact_share"] == 0.0 and m["copy_nn_below_p5_share"] == 0.0
    assert m["copy_ct"] > 10  # measured +13.8


def test_a_partial_copier_lands_between():
    g = torch.Generator().manual_seed(2)
    train, heldout, fresh = (torch.randn(n, 2, generator=g) for n in (3000, 1000, 1000))
    half = torch.cat([train[:500], fresh[:500]])
    m = memorization_metrics(half, train, heldout)
    assert m["copy_exact_share"] == 0.5
    assert 0.5 < m["copy_nn_below_p5_share"] < 0.56  # the copies, plus ~5% of the fresh half
    assert m["copy_ct"] < -5
    # i.i.d. fresh points are the textbook "no copying": share ~5%, C_T ~ 0
    clean = memorization_floor(train, heldout, fresh)
    assert clean["copy_exact_share_floor"] == 0.0
    assert abs(clean["copy_nn_below_p5_share_floor"] - 0.05) < 0.025  # 3 sd of 0.007 (n=1000) and 0.007 (p5)
    assert abs(clean["copy_ct_floor"]) < 1.5


def test_exact_copy_share_needs_every_value_equal():
    train = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    samples = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.000001], [-0.0, 1.0, 2.0], [5.0, 4.0, 3.0]])
    assert exact_copy_share(samples, train) == 0.5  # rows 0 and 2 (-0.0 == 0.0); a near miss is no copy


def test_exact_copies_and_distances_scale_to_a_thousand_by_a_thousand():
    g = torch.Generator().manual_seed(3)
    train = torch.randint(0, 17, (1000, 64), generator=g).float()
    samples = torch.cat([train[:250], torch.randint(0, 17, (750, 64), generator=g).float()])
    start = time.perf_counter()
    assert exact_copy_share(samples, train) == 0.25
    d = nn_distances(samples, train)
    assert time.perf_counter() - start < 2.0  # measured ~0.02 s
    expected = torch.cdist(samples.double(), train.double(), compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert torch.equal(d[:250], torch.zeros(250)) and torch.allclose(d, expected, rtol=0, atol=1e-9)


def test_closer_than_heldout_share_uses_a_strict_percentile():
    heldout = torch.arange(1.0, 101.0)  # p5 with linear interpolation: 5.95
    share, threshold = closer_than_heldout_share(torch.tensor([1.0, 5.0, 5.9, 6.0, 50.0]), heldout)
    assert threshold == pytest.approx(5.95) and share == pytest.approx(3 / 5)
    at_threshold = torch.tensor([threshold], dtype=torch.float64)
    assert closer_than_heldout_share(at_threshold, heldout)[0] == 0.0  # at the threshold is not below it
    assert closer_than_heldout_share(heldout, heldout)[0] == 0.05  # held-out against itself: 5 of 100


def test_mann_whitney_z_matches_scipy():
    from scipy.stats import mannwhitneyu, norm

    g = torch.Generator().manual_seed(4)
    heldout, samples = torch.randn(13, generator=g), torch.randn(9, generator=g) + 0.7
    z = mann_whitney_z(heldout, samples)
    res = mannwhitneyu(samples.double().numpy(), heldout.double().numpy(), method="asymptotic", use_continuity=False)
    assert 2 * norm.sf(abs(z)) == pytest.approx(res.pvalue, rel=1e-10)
    m, n = 13, 9
    sigma = math.sqrt(m * n * (m + n + 1) / 12)
    assert z * sigma + m * n / 2 == pytest.approx(res.statistic)  # U counts samples above held-out
    assert z > 0  # samples shifted up: farther, so positive

    # ties count one half: U of [1, 2, 2] over [2, 3] = (0 + 0.5 + 0.5) + (0 + 0 + 0) = 1
    tied = mannwhitneyu([1.0, 2.0, 2.0], [2.0, 3.0], method="asymptotic").statistic
    z = mann_whitney_z(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 2.0, 2.0]))
    assert tied == 1.0 and z == pytest.approx((1.0 - 3) / math.sqrt(6 * 6 / 12))


def test_c_t_drops_sparse_cells_and_weights_by_heldout_share():
    # cell 0: 4 held-out, 3 samples; cell 1: 2 held-out, 1 sample (dropped at min_per_cell=2); cell 2: no held-out
    heldout_d = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0, 11.0])
    heldout_c = torch.tensor([0, 0, 0, 0, 1, 1])
    sample_d = torch.tensor([0.5, 1.5, 2.5, 0.0, 7.0, 8.0])
    sample_c = torch.tensor([0, 0, 0, 1, 2, 2])
    ct = c_t_from_cells(heldout_d, heldout_c, sample_d, sample_c, cells=3, min_per_cell=2)
    # only cell 0 kept: U = 0 + 1 + 2 = 3 of mn = 12, so Z = (3 - 6) / sqrt(12 * 8 / 12)
    assert ct.cells_kept == 1 and ct.value == pytest.approx(-3 / math.sqrt(8))
    ct = c_t_from_cells(heldout_d, heldout_c, sample_d, sample_c, cells=3, min_per_cell=1)
    z1 = (0 - 1) / math.sqrt(2 * 1 * 4 / 12)  # cell 1: the one sample is below both held-out points
    assert ct.cells_kept == 2 and ct.value == pytest.approx((4 / 6 * -3 / math.sqrt(8) + 2 / 6 * z1) / 1.0)
    assert math.isnan(c_t_from_cells(heldout_d, heldout_c, sample_d, sample_c, cells=3, min_per_cell=9).value)


def test_kmeans_is_deterministic_and_finds_separated_clusters():
    g = torch.Generator().manual_seed(5)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    x = (centres[:, None] + torch.randn(3, 100, 2, generator=g)).reshape(300, 2)
    a, b = kmeans(x, 3, seed=0), kmeans(x.clone(), 3, seed=0)
    assert torch.equal(a, b)
    labels = assign_cells(x, a)
    for i in range(3):  # each true cluster lands whole in one cell, and the cells differ
        assert len(set(labels[i * 100 : (i + 1) * 100].tolist())) == 1
    assert len(set(labels.tolist())) == 3
    for c in range(3):  # Lloyd's fixed point: each centre is the mean of its cell
        assert torch.allclose(a[c], x[labels == c].double().mean(0), atol=1e-12)
    # the same seed gives the same C_T twice
    assert c_t_statistic(x[::2], x[1::4], x[3::4]) == c_t_statistic(x[::2], x[1::4], x[3::4])


def test_mismatched_or_non_finite_inputs_are_refused():
    from genzoo.core.errors import GenzooError

    ref = MemorizationReference(torch.randn(50, 3), torch.randn(20, 3))
    with pytest.raises(GenzooError, match="values"):
        ref.metrics(torch.randn(30, 4))
    with pytest.raises(GenzooError, match="NaN"):
        ref.metrics(torch.full((30, 3), float("nan")))


# ---- wired into evaluate() and the bench table ------------------------------------------


class _Replay(nn.Module):
    """A "model" that samples training images: the perfect copier."""

    family, capabilities = "replay", frozenset({"sample"})

    def __init__(self, pool):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.pool = pool

    def sample(self, n, *, condition=None, generator=None, **_):
        return self.pool[torch.randint(len(self.pool), (n,), generator=generator)]


def test_evaluate_reports_memorization_beside_its_floor(digits):
    from genzoo.eval import evaluate, format_report

    m = evaluate(_Replay(digits[0]), "digits", n_samples=400, nll=False)
    json.dumps(m)
    assert m["copy_exact_share"] == 1.0 and m["copy_nn_below_p5_share"] == 1.0 and m["copy_ct"] < -5
    assert m["copy_exact_share_floor"] == 0.0 and abs(m["copy_ct_floor"]) < 1.5
    assert m["copy_floor_n"] == 350 and m["copy_heldout_n"] == 447 and m["copy_train_n"] == 1000
    assert m["copy_nn_percentile"] == 5.0 and m["copy_nn_threshold"] > 0
    assert "fd_digits" in m  # the other scores are still there
    text = format_report(m)
    assert "memorization" in text and "C_T" in text and "copying" in text


def test_evaluate_reports_memorization_for_toy2d():
    from genzoo.eval import evaluate

    val = load_dataset("toy2d:moons", "val").x
    m = evaluate(_Replay(val), "toy2d:moons", n_samples=200, nll=False)
    assert m["copy_exact_share"] == 0.0 and abs(m["copy_ct"]) < 1.5 and m["copy_floor_n"] == 200
    assert "mmd2" in m and m["copy_heldout_n"] == 2000


def test_bench_table_has_memorization_columns_and_floor():
    from genzoo.bench.report import html_page, markdown

    rows = [{"family": "vae", "fd_digits": 80.0, "fd_digits_floor": 35.2, "copy_exact_share": 0.0,
             "copy_exact_share_floor": 0.0, "copy_nn_below_p5_share": 0.215, "copy_nn_below_p5_share_floor": 0.0914,
             "copy_ct": -4.5, "copy_ct_floor": 0.34}]
    table = markdown(rows, "digits", {"minutes": 5})
    head = table.splitlines()[2]
    assert "copies" in head and "NN<p5" in head and "C_T" in head
    floor_row = next(line for line in table.splitlines() if "real-vs-real floor" in line)
    assert "0.091" in floor_row and "+0.34" in floor_row and "35.20" in floor_row
    assert "-4.50" in table and "validation examples" in table
    assert "C_T" in html_page(rows, "digits", {"minutes": 5})


def test_the_reading_line_names_copying_underfitting_and_neither():
    from genzoo.eval.report import memorization_reading

    floor = {"copy_nn_below_p5_share_floor": 0.09}
    assert "copying" in memorization_reading({**floor, "copy_ct": -8.0, "copy_exact_share": 0.2})
    assert "20.0% of samples are exact" in memorization_reading({**floor, "copy_ct": -8.0, "copy_exact_share": 0.2})
    assert "underfitting" in memorization_reading({**floor, "copy_ct": 8.0, "copy_exact_share": 0.0})
    calm = memorization_reading({**floor, "copy_ct": 0.3, "copy_exact_share": 0.0, "copy_nn_below_p5_share": 0.1})
    assert "no sign of copying" in calm and "some copying" not in calm
    # the demo diffusion model's 21.5% below p5 reads as copying even when C_T is unremarkable
    assert "some copying" in memorization_reading({**floor, "copy_ct": 0.3, "copy_nn_below_p5_share": 0.215})

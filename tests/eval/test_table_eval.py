"""Table metrics on answers known in advance: copies are caught, fresh rows read like the floor."""

import numpy as np
import pandas as pd
import pytest

from genzoo.eval.tables import Features, dcr, detection_auc, ml_efficacy, table_lines, table_scores

COLUMNS = [{"name": "x", "type": "continuous"}, {"name": "y", "type": "continuous"}, {"name": "k", "type": "categorical"}]


def draw(n, seed, shift=0.0):
    r = np.random.default_rng(seed)
    x = r.normal(shift, 1, n)
    k = np.where(x + r.normal(0, 0.3, n) > shift, "up", "down")
    return pd.DataFrame({"x": x, "y": 2 * x + r.normal(0, 0.5, n), "k": k})


@pytest.fixture(scope="module")
def real():
    return draw(1500, 0), draw(300, 1), draw(300, 2)  # train, test, validation


def test_dcr_catches_copies_and_reads_fresh_rows_as_the_floor(real):
    train, test, _ = real
    enc = Features(train, COLUMNS)
    copies = dcr(enc(train), enc(test), enc(train.sample(300, random_state=0)))
    assert copies["exact_copies"] == 1.0 and copies["dcr_below_test_p5"] == 1.0
    assert copies["closer_to_train"] > 0.55  # a copy is nearer the training subset whenever it was drawn into it
    fresh = dcr(enc(train), enc(test), enc(draw(2000, 3)))
    assert fresh["exact_copies"] == 0.0 and 0.01 < fresh["dcr_below_test_p5"] < 0.12  # 5% = no copying
    assert fresh["dcr_median"] == pytest.approx(fresh["dcr_median_test"], rel=0.3)
    assert abs(fresh["closer_to_train"] - 0.5) < 0.04  # fresh rows: as near the training rows as unseen ones


def test_closer_to_train_tells_density_from_copying(real):
    """Rows bunched where the data is dense come near some real row (dcr_below_test_p5 rises) without
    being nearer the training rows than the test rows; jittered training rows are."""
    train, test, _ = real
    enc = Features(train, COLUMNS)
    r = np.random.default_rng(4)
    dense = draw(2000, 5).assign(x=lambda f: f["x"] * 0.3, y=lambda f: f["y"] * 0.3)  # the centre of the same law
    bunched = dcr(enc(train), enc(test), enc(dense))
    near = train.sample(2000, replace=True, random_state=1).assign(x=lambda f: f["x"] + r.normal(0, 0.01, len(f)))
    jittered = dcr(enc(train), enc(test), enc(near))
    fresh = dcr(enc(train), enc(test), enc(draw(2000, 5)))
    assert bunched["dcr_below_test_p5"] > 1.3 * fresh["dcr_below_test_p5"]  # measured 0.095 against 0.062
    assert abs(bunched["closer_to_train"] - 0.5) < 0.05  # measured 0.479
    assert jittered["closer_to_train"] > 0.54 and jittered["exact_copies"] == 0.0  # measured 0.575


def test_ml_efficacy_and_detection_know_good_from_bad(real):
    train, test, _ = real
    assert ml_efficacy(train, test, "k", COLUMNS) > 0.8
    shuffled = train.assign(k=train["k"].sample(frac=1, random_state=0).to_numpy())
    assert ml_efficacy(shuffled, test, "k", COLUMNS) < 0.65
    assert ml_efficacy(train, test, "y", COLUMNS) > 0.8  # a numeric target: R^2
    assert abs(detection_auc(train, draw(1500, 5), COLUMNS) - 0.5) < 0.08
    assert detection_auc(train, draw(1500, 5, shift=1.5), COLUMNS) > 0.85


def test_scores_have_floors_and_print(real):
    train, test, val = real
    m = table_scores(draw(400, 7), train, test, val, "k", COLUMNS, membership=False)
    for key in ("quality", "ml_efficacy", "detection_auc", "dcr_below_test_p5", "exact_copies"):
        assert key in m and key + "_floor" in m
    assert m["quality"] > 0.8 and m["quality_floor"] > 0.8
    text = "\n".join(table_lines(m))
    assert "ML efficacy" in text and "floor" in text


def test_column_pairs_bin_both_sides_on_the_real_edges(real):
    """A generator that leaves out the real rows' outliers keeps every pair's trend: the pair score must
    say so. sdmetrics 0.32's report bins each side on its own range and reads the same rows as unrelated."""
    from genzoo.eval.tables import column_pair_trends, quality

    train, _, _ = real
    outlier = train.copy()
    outlier.loc[0, "x"] = 40.0  # one real outlier stretches the real bins 8x
    inside = draw(1500, 9)  # fresh rows from the same law, none near 40
    q = quality(outlier, inside, COLUMNS)
    assert q["column_pairs"] > 0.9  # x-k and x-y trends kept
    assert q["column_pairs_report"] < q["column_pairs"] - 0.1  # the report's own bins: the control that the case bites
    shuffled = inside.assign(k=inside["k"].sample(frac=1, random_state=0).to_numpy(), y=inside["y"].sample(frac=1, random_state=1).to_numpy())
    assert column_pair_trends(outlier, shuffled, COLUMNS) < 0.75  # trends broken: caught
    assert q["quality"] == pytest.approx((q["column_shapes"] + q["column_pairs"]) / 2)


def test_column_pairs_score_a_collapsed_column_as_lost_trend(real):
    from genzoo.eval.tables import column_pair_trends

    train, _, _ = real
    collapsed = draw(1500, 11).assign(y=1.0)  # y constant: its trend with x (r = 0.97) is gone
    assert column_pair_trends(train, collapsed, COLUMNS) < column_pair_trends(train, draw(1500, 11), COLUMNS) - 0.1

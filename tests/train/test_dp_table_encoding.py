"""A DP run's table encoding (genzoo.train.dp_table_encoding): tried as an attacker would, with known answers
for the noise, the category threshold and the accountant, and close to the plain fit when epsilon is large."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from genzoo import api
from genzoo.core.errors import GenzooError
from genzoo.data import table as tables
from genzoo.train import dp_table_encoding as tp
from genzoo.train import dp

OUTLIER, RARE = 9_876_543.0, "astronaut"
TINY = {"latent_dim": 4, "hidden_widths": [16]}


@pytest.fixture()
def people(tmp_path):
    """3,000 rows; one person earns OUTLIER and one is an astronaut: what a published encoding must not show."""
    r = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"salary": np.round(r.normal(50_000, 8_000, n), 0), "age": r.integers(18, 80, n),
                          "job": r.choice(["nurse", "clerk", "engineer", "driver"], n), "smoker": r.random(n) < 0.2})
    frame.loc[17, "salary"], frame.loc[17, "job"] = OUTLIER, RARE
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    rows = tables.prepared(str(path))[2]["train"]
    assert 17 in set(rows)  # the person is in the training split
    return str(path)


def _files_mention(folder, needles) -> list[str]:
    hits = []
    for f in folder.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            hits += [f"{f.name}: {n}" for n in needles if n.encode() in blob]
    return hits


def test_an_attacker_finds_neither_the_outlier_nor_the_rare_category_in_a_dp_run(people, tmp_path, monkeypatch):
    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    kw = dict(steps=4, batch_size=64, model_overrides=TINY, progress=False, val_every=0)
    plain, _ = api.train("tvae", people, out=tmp_path / "plain", **kw)
    spec = plain.data_spec["table"]
    cols = {c["name"]: c for c in spec["columns"]}
    # the control: without DP the checkpoint publishes both (so the checks below can fail)
    assert cols["salary"]["max"] == OUTLIER and RARE in cols["job"]["categories"]
    assert _files_mention(tmp_path / "plain", ["9876543", RARE])

    model, summary = api.train("tvae", people, out=tmp_path / "dp", dp_epsilon=3.0, **kw)
    cols = {c["name"]: c for c in model.data_spec["table"]["columns"]}
    assert cols["salary"]["max"] < 200_000 and max(cols["salary"]["quantiles"]) < 200_000
    assert RARE not in cols["job"]["categories"] and set(cols["job"]["categories"]) == {"nurse", "clerk", "engineer", "driver"}
    assert not _files_mention(tmp_path / "dp", ["9876543", RARE])  # weights, config, logs, privacy.json
    rows = tables.decode(model.sample(2000), model.data_spec["table"])
    assert rows["salary"].max() < 200_000 and RARE not in set(rows["job"])
    # 40k..60k holds most salaries: the private range and median are still useful
    assert 20_000 < cols["salary"]["min"] < 40_000 and 60_000 < cols["salary"]["max"] and abs(cols["salary"]["median"] - 50_000) < 2_000


def test_the_accountant_counts_the_encoding_and_spends_at_most_the_target(people, tmp_path, monkeypatch):
    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    model, summary = api.train("tvae", people, out=tmp_path / "dp", steps=5, batch_size=64, model_overrides=TINY,
                               progress=False, val_every=0, dp_epsilon=3.0)
    recorded = json.loads((tmp_path / "dp" / "privacy.json").read_text())
    schema = recorded["table_encoding"]
    assert schema["epsilon_alone"] == pytest.approx(tp.SHARE * 3.0, abs=0.01)
    assert 2.95 <= recorded["epsilon"] <= 3.0  # the steps were calibrated for what the encoding left
    delta_rdp = recorded["delta"] - schema["delta_threshold"]
    q, sigma = recorded["sample_rate"], recorded["noise_multiplier"]
    steps_only = dp.spent_epsilon([(sigma, q, 5)], delta_rdp)
    assert steps_only < recorded["epsilon"] - 0.01  # the encoding's releases are in the total ...
    assert sigma > dp.noise_multiplier(3.0, delta_rdp, q, 5) * 1.005  # ... so the steps got more noise than alone
    # a resume rebuilds the rows with the run's own (private) encoding and keeps the ledger
    again, _ = api.train("tvae", people, out=tmp_path / "dp", resume=True)
    assert json.loads((tmp_path / "dp" / "privacy.json").read_text())["epsilon"] == pytest.approx(recorded["epsilon"])
    from genzoo.eval.privacy import attack_model

    results = attack_model(again, people, likelihood=False)  # real rows encoded as the model encodes them
    assert results and 0.0 <= results[0]["auc"] <= 1.0


def test_category_noise_has_the_calibrated_sd_and_the_threshold_its_rate():
    col = {"name": "job", "type": "categorical", "dtype": "object", "missing": 0.0}
    values = pd.Series(["a"] * 5000 + ["b"] * 3000 + ["c"])
    noise = tp.Noise.__new__(tp.Noise)
    noise.seeded, noise.rng = True, np.random.default_rng(1)
    sd, published, trials = 40.0, 0, 4000
    deviations = []
    tau = tp.category_threshold(sd, 0.2, 1)  # P(a singleton is published) = 0.2 by construction
    for _ in range(trials):
        out = tp._categorical(col, values, sd, tau, noise, 3.0)
        counts = dict(zip(out["categories"], out["counts"]))
        deviations.append(counts["a"] - 5000)
        published += "c" in counts
    assert np.std(deviations) == pytest.approx(sd, rel=0.05) and abs(np.mean(deviations)) < 3
    assert published / trials == pytest.approx(0.2, abs=0.025)


def test_with_a_large_epsilon_the_private_encoding_is_close_to_the_plain_one(people):
    private = tp.private_spec(people, 1e4, None, 0)
    plain = tables.prepared(people)[1]
    for a, b in zip(plain["columns"], private["columns"]):
        if a["type"] in ("continuous", "integer"):
            span = np.subtract(*np.quantile(a["quantiles"], [0.95, 0.05]))
            assert np.max(np.abs(np.subtract(a["quantiles"][5:-5], b["quantiles"][5:-5]))) < 0.05 * abs(span), a["name"]
        else:
            assert set(b["categories"]) <= set(a["categories"]) and a["categories"][0] == b["categories"][0]
            want = dict(zip(map(json.dumps, a["categories"]), a["counts"]))
            assert all(abs(c - want[json.dumps(k)]) <= 2 for k, c in zip(b["categories"], b["counts"]))


def test_the_partition_is_fixed_and_its_cells_hold_their_values():
    v = np.array([-3.0, -1e-9, 0.0, 1e-9, 0.3, 1.0, 1.5, 2.0, 1e6, -1e6])
    for x, i in zip(v, tp.log_cell(v)):
        lo, hi = tp.cell_edges(int(i))
        assert (lo <= x < hi) or (lo == hi == 0.0 and abs(x) < 2.0 ** tp.OCTAVES[0]), (x, i, lo, hi)


def test_a_table_too_small_for_its_epsilon_is_refused_clearly(monkeypatch):
    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    with pytest.raises(GenzooError, match="raise --dp-epsilon") as e:
        tp.private_spec("penguins", 0.3, None, 0)  # 275 training rows
    assert "\n" not in str(e.value)


def test_the_copula_learns_its_correlation_under_dp(tmp_path, monkeypatch):
    """Its factor is a layer's parameter (per-row gradients through Opacus' functorch path), not frozen."""
    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    r = np.random.default_rng(1)
    x = r.normal(0, 1, 4000)
    frame = pd.DataFrame({"x": np.round(x, 3), "y": np.round(0.9 * x + 0.3 * r.normal(0, 1, 4000), 3),
                          "z": np.round(r.normal(0, 1, 4000), 3)})
    path = tmp_path / "corr.csv"
    frame.to_csv(path, index=False)
    model, summary = api.train("copula", str(path), out=tmp_path / "cop", steps=200, batch_size=200, progress=False,
                               val_every=0, dp_epsilon=3.0)
    assert summary["privacy"]["frozen_parameters"] == [] and summary["privacy"]["epsilon"] <= 3.0
    c = model.correlation().detach()
    assert c[0, 1] > 0.85 and abs(c[0, 2]) < 0.15  # true: 0.95 and 0


def test_one_missing_cell_does_not_show_in_the_layout(tmp_path, monkeypatch):
    """Whether any row lacks a value is data too: one person's blank cell adds no missing-indicator block."""
    monkeypatch.setenv(dp.SEEDED_ENV, "1")
    r = np.random.default_rng(2)
    frame = pd.DataFrame({"a": np.round(r.normal(0, 1, 3000), 2), "b": np.round(r.normal(5, 2, 3000), 2),
                          "c": np.round(r.normal(0, 1, 3000), 2)})
    frame.loc[:, "c"] = frame["c"].where(r.random(3000) > 0.3)  # 30% blank: shows
    frame.loc[5, "a"] = np.nan  # one blank: must not
    path = tmp_path / "blank.csv"
    frame.to_csv(path, index=False)
    assert 5 in set(tables.prepared(str(path))[2]["train"])
    plain = {c["name"]: c for c in tables.prepared(str(path))[1]["columns"]}
    private = {c["name"]: c for c in tp.private_spec(str(path), 3.0, None, 0)["columns"]}
    assert plain["a"]["missing"] > 0 and private["a"]["missing"] == 0.0
    assert private["c"]["missing"] == pytest.approx(0.3, abs=0.03)
    x = tables.load(str(path), "train", tp.private_spec(str(path), 3.0, None, 0)).x
    assert x.shape[1] == tables.width(tp.private_spec(str(path), 3.0, None, 0)) and torch.isfinite(x).all()

"""privbayes: a Bayesian network from counts learns a table's dependencies; under --dp-epsilon it
spends what the accountant says, with noise that is really there."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from genzoo import api
from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.data import load_dataset
from genzoo.data import table as tables
from genzoo.eval.tables import quality


def write(tmp_path, name, frame) -> str:
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def chain(n, seed=0):
    """kind -> x (the kind picks x's mode) -> y (y follows x); flag is noise."""
    r = np.random.default_rng(seed)
    kind = r.choice(["low", "mid", "high"], n, p=[0.5, 0.3, 0.2])
    x = np.select([kind == "low", kind == "mid"], [-2.0, 0.0], 3.0) + r.normal(0, 0.3, n)
    return pd.DataFrame({"kind": kind, "x": np.round(x, 2), "y": np.round(0.8 * x + r.normal(0, 0.3, n), 2),
                         "flag": r.choice(["a", "b"], n)})


def rows(model, n, seed=0):
    with torch.no_grad():
        x = model.sample(n, generator=torch.Generator().manual_seed(seed))
    return tables.decode(x, model.data_spec["table"])


def test_learns_the_chain_and_its_network_says_so(tmp_path):
    name = write(tmp_path, "chain", chain(3000)) + "#target=kind"
    model, summary = api.train("privbayes", name, out=tmp_path / "run", progress=False)
    assert summary["steps"] == 1
    spec = model.data_spec["table"]
    cols = [c["name"] for c in spec["columns"]]
    edges = {frozenset((cols[v], cols[p])) for v in range(len(cols)) for p in model.config.parents[v]}
    assert frozenset(("kind", "x")) in edges and frozenset(("x", "y")) in edges, edges
    real = tables.split_frame(name, "train")
    untrained = api.build_model("privbayes", load_dataset(name, "train"), seed=0).eval()  # columns independent, uniform
    q0, q1 = quality(real, rows(untrained, 2000), spec["columns"])["quality"], quality(real, rows(model, 2000), spec["columns"])["quality"]
    assert q1 > 0.9 and q1 > q0 + 0.2, (q0, q1)
    fake = rows(model, 4000)
    assert abs(np.corrcoef(fake["x"], fake["y"])[0, 1] - np.corrcoef(real["x"], real["y"])[0, 1]) < 0.05


def test_samples_follow_the_counted_tables(tmp_path):
    """Brute force on two categorical columns: exact counts in, the same joint shares out."""
    r = np.random.default_rng(1)
    a = r.choice(["p", "q", "r"], 6000, p=[0.6, 0.3, 0.1])
    b = np.where(a == "p", r.choice(["u", "v"], 6000, p=[0.9, 0.1]), r.choice(["u", "v"], 6000, p=[0.2, 0.8]))
    name = write(tmp_path, "ab", pd.DataFrame({"a": a, "b": b})) + "#target=a"
    model, _ = api.train("privbayes", name, out=tmp_path / "run", progress=False)
    real = pd.crosstab(*(tables.split_frame(name, "train")[c] for c in ("a", "b")), normalize=True)
    fake = rows(model, 40_000)
    drawn = pd.crosstab(fake["a"], fake["b"], normalize=True).reindex_like(real).fillna(0)
    assert (drawn - real).abs().to_numpy().max() < 0.01, (drawn, real)


@pytest.fixture(scope="module")
def dp_runs(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("GENZOO_DP_SEEDED_NOISE", "1")
    tmp = tmp_path_factory.mktemp("pbdp")
    name = write(tmp, "chain", chain(6000)) + "#target=kind"
    runs = {key: api.train("privbayes", name, out=tmp / key, progress=False, seed=seed, dp_epsilon=eps, dp_delta=1e-6)
            for key, eps, seed in (("eps3-s0", 3.0, 0), ("eps3-s1", 3.0, 1))}
    runs["exact"] = api.train("privbayes", name, out=tmp / "exact", progress=False, seed=0)
    return tmp, name, runs


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_dp_spends_what_its_noise_says(dp_runs):
    """The recorded noise scales, put through the RDP accountant again, give the recorded epsilon."""
    from genzoo.train.dp import spent_epsilon

    tmp, _, runs = dp_runs
    p = json.loads((tmp / "eps3-s0" / "privacy.json").read_text())
    assert p["epsilon"] == pytest.approx(runs["eps3-s0"][1]["privacy"]["epsilon"])
    assert 2.9 < p["epsilon"] <= 3.0 and p["delta"] == 1e-6
    d, schema = p["choices"] + 1, p["table_encoding"]
    history = [(schema["noise_multiplier"], 1.0, schema["releases"]), (p["one_way_cell_sd"] / math.sqrt(d), 1.0, 1),
               (2.0 / p["selection_epsilon0"], 1.0, d - 1), (p["table_cell_sd"] / math.sqrt(d - 1), 1.0, 1)]
    assert spent_epsilon(history, p["delta"] - schema["delta_threshold"]) == pytest.approx(p["epsilon"], rel=1e-6)
    assert p["table_cell_sd"] > 1 and p["one_way_cell_sd"] > 1


def test_dp_noise_is_there_and_the_model_still_learns(dp_runs):
    tmp, name, runs = dp_runs
    a, b, exact = (runs[k][0] for k in ("eps3-s0", "eps3-s1", "exact"))
    v = next(v for v in range(len(a.config.parents)) if a.config.parents[v])
    if a.config.parents == b.config.parents:
        assert not torch.equal(getattr(a, f"cpt_{v}"), getattr(b, f"cpt_{v}"))  # different noise, different tables
    assert any(not torch.equal(getattr(a, f"cpt_{v}"), getattr(exact, f"cpt_{v}")) or a.config.parents != exact.config.parents
               for v in range(len(a.config.parents)))
    spec = a.data_spec["table"]
    real = tables.split_frame(name, "train")
    assert quality(real, rows(a, 2000), spec["columns"])["quality"] > 0.85


def test_too_small_an_epsilon_is_refused_in_one_line(tmp_path):
    name = write(tmp_path, "chain", chain(3000)) + "#target=kind"
    with pytest.raises(GenzooError, match="raise it") as e:
        api.train("privbayes", name, out=tmp_path / "run", progress=False, dp_epsilon=0.01, dp_delta=1e-6)
    assert "\n" not in str(e.value)


def test_cli_train_sample_and_record(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_STORE", f"sqlite:///{tmp_path / 'store.db'}")
    path = write(tmp_path, "chain", chain(2000))
    runner = CliRunner()
    out = runner.invoke(app, ["train", "privbayes", "--data", path, "--target", "kind", "--out", str(tmp_path / "run"), "--no-eval"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "50", "--condition", "kind=high", "-o", str(tmp_path / "s.csv")])
    assert out.exit_code == 0, out.output
    got = pd.read_csv(tmp_path / "s.csv")
    assert len(got) == 50 and set(got["kind"]) == {"high"} and got["x"].mean() > 2  # the high kind's mode is 3


def test_every_count_is_noised_with_secure_noise(tmp_path, monkeypatch):
    """Two DP fits with the same seed start from the same column (public randomness), yet their tables
    differ (os.urandom noise), and neither is the exact count; every table stays within the usefulness cap."""
    monkeypatch.delenv("GENZOO_DP_SEEDED_NOISE", raising=False)
    name = write(tmp_path, "chain", chain(6000)) + "#target=kind"
    fits = [api.train("privbayes", name, out=tmp_path / f"dp{i}", progress=False, seed=0, dp_epsilon=3.0, dp_delta=1e-6)
            for i in range(2)]
    exact, _ = api.train("privbayes", name, out=tmp_path / "exact", progress=False, seed=0)
    (a, sa), (b, _) = fits
    root = a.config.order[0]
    assert b.config.order[0] == root == exact.config.order[0]
    ra, rb, rx = (getattr(m, f"cpt_{root}") for m in (a, b, exact))
    assert not torch.equal(ra, rb) and not torch.equal(ra, rx)
    assert (ra - rx).abs().max() < 0.05  # noise of a few rows on thousands
    final = sa["final"]
    assert final["largest_table"] <= final["table_cells_cap"] < 6000

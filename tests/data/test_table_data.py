"""Tables: schema inference, the reversible encoding, splits, built-ins without network, clear errors."""

import socket

import numpy as np
import pandas as pd
import pytest

from genzoo.core.errors import GenzooError
from genzoo.data import load_dataset, resolve
from genzoo.data import table as tables


def known_frame(n=200, seed=0) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    return pd.DataFrame({
        "height": np.round(np.r_[r.normal(150, 5, n // 2), r.normal(185, 5, n - n // 2)], 1),  # two modes
        "visits": r.integers(0, 400, n),  # many distinct integers: numeric
        "doors": r.choice([2, 4, 5], n),  # few distinct integers: a category
        "color": r.choice(["red", "green", "blue"], n),
        "member": r.random(n) < 0.3,
        "score": np.where(r.random(n) < 0.1, np.nan, np.round(r.normal(0, 1, n), 3)),
        "city": np.where(r.random(n) < 0.1, None, r.choice(["a", "b"], n)),
    })


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "known.csv"
    known_frame().to_csv(path, index=False)
    return str(path)


def test_schema_is_inferred(csv):
    _, spec, _ = tables.prepared(csv)
    types = {c["name"]: c["type"] for c in spec["columns"]}
    assert types == {"height": "continuous", "visits": "integer", "doors": "categorical", "color": "categorical",
                     "member": "boolean", "score": "continuous", "city": "categorical"}
    cols = {c["name"]: c for c in spec["columns"]}
    assert len(cols["height"]["means"]) >= 2  # the two modes are found
    assert cols["score"]["missing"] > 0 and ["missing", 2, 5] in spec["segments"]
    assert None in cols["city"]["categories"]  # missing categories are a category
    text = tables.describe(spec)
    assert "height" in text and "continuous" in text and "missing" in text


def test_encode_decode_round_trip(csv):
    frame, spec, rows = tables.prepared(csv)
    part = tables.split_frame(csv, "train")
    back = tables.decode(tables.encode(part, spec), spec)
    assert list(back.columns) == list(part.columns)
    for name in ("color", "doors", "member"):  # categories: exact, with their dtype
        assert back[name].tolist() == part[name].tolist() and back[name].dtype == part[name].dtype
    assert back["city"].isna().tolist() == part["city"].isna().tolist()
    assert back["city"].dropna().tolist() == part["city"].dropna().tolist()
    assert back["score"].isna().tolist() == part["score"].isna().tolist()
    np.testing.assert_allclose(back["height"], part["height"], atol=0.051)  # within the written precision
    np.testing.assert_allclose(back["score"].dropna(), part["score"].dropna(), atol=5e-4)
    assert (back["visits"] == part["visits"]).mean() > 0.99 and back["visits"].dtype == part["visits"].dtype


def test_decode_keeps_only_known_categories(csv):
    _, spec, _ = tables.prepared(csv)
    noise = np.random.default_rng(1).normal(size=(50, tables.width(spec)))
    back = tables.decode(noise, spec)
    assert set(back["color"]) <= {"red", "green", "blue"}
    assert back["height"].between(spec["columns"][0]["min"], spec["columns"][0]["max"]).all()


def test_splits_are_disjoint_seeded_and_kind_table(csv):
    parts = {s: load_dataset(csv, s) for s in ("train", "val", "test")}
    assert parts["train"].kind == "table" and parts["train"].spec()["table"]["name"] == csv
    assert [len(p) for p in parts.values()] == [160, 20, 20]
    _, _, rows = tables.prepared(csv)
    assert not set(rows["train"]) & set(rows["test"]) and not set(rows["val"]) & set(rows["test"])


def test_target_in_the_name(csv):
    _, spec, _ = tables.prepared(tables.with_target(csv, "color"))
    assert spec["target"] == "color" and tables.target_of(spec) == "color"
    with pytest.raises(GenzooError, match="no_such"):
        resolve(tables.with_target(csv, "no_such")).load("train")


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.assign(visits=f["visits"].astype(object).where(f.index != 7, "lots")), "column 'visits' row 9: 'lots' is not a number"),
    (lambda f: f.assign(same="x"), "column 'same' has one value"),
    (lambda f: f.assign(empty=np.nan), "column 'empty' is empty"),
    (lambda f: f.assign(id=[f"user{i}" for i in range(len(f))]).pipe(lambda g: pd.concat([g] * 3, ignore_index=True)
                                                                   .assign(id=[f"u{i}" for i in range(3 * len(g))])), "column 'id' has 600 distinct"),
])
def test_bad_tables_name_column_and_row(tmp_path, edit, message):
    path = tmp_path / "bad.csv"
    edit(known_frame()).to_csv(path, index=False)
    with pytest.raises(GenzooError, match=message):
        load_dataset(str(path))


def test_random_bytes_are_not_a_table(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(GenzooError, match="not a table"):
        load_dataset(str(path))
    (tmp_path / "tiny.csv").write_text("a\n1\n2\n")
    with pytest.raises(GenzooError, match="not a usable table"):
        load_dataset(str(tmp_path / "tiny.csv"))


def test_builtins_need_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a built-in table tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert tables.read_frame("diamonds").shape == (53940, 10)
    penguins = load_dataset("penguins", "train")
    assert penguins.kind == "table" and penguins.spec()["table"]["target"] == "species"
    cancer = tables.read_frame("cancer")
    assert cancer.shape == (569, 31) and set(cancer["diagnosis"]) == {"benign", "malignant"}


def test_parquet_reads_like_csv(tmp_path, csv):
    path = tmp_path / "known.parquet"
    known_frame().to_parquet(path)
    a, b = tables.prepared(str(path))[1], tables.prepared(csv)[1]
    assert [(c["name"], c["type"]) for c in a["columns"]] == [(c["name"], c["type"]) for c in b["columns"]]
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(GenzooError, match="not a readable Parquet"):
        load_dataset(str(tmp_path / "fake.parquet"))

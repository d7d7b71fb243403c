"""`genzoo choose` on kinds beyond points and digits: tables (ranked on the bench's SDMetrics quality)
and a user's folder of images (no feature network: the test NLL is the quality, in every round)."""

from __future__ import annotations

import numpy as np
import pytest

from genzoo.bench import choose as ch


def table_row(quality, floor=0.80, dcr=0.05, dcr_floor=0.05, exact=0.0):
    return ch.with_table_gap({"table_rows": 500, "quality": quality, "quality_floor": floor, "samples_per_second": 1e4,
                              "parameters": 10, "dcr_below_test_p5": dcr, "dcr_below_test_p5_floor": dcr_floor,
                              "exact_copies": exact})


def test_tables_rank_by_the_benchs_quality_higher_is_better():
    res = {"a": table_row(0.70), "b": table_row(0.78), "c": table_row(0.60)}
    assert ch.quality_key(res["a"])[0] == "quality_gap"
    assert res["b"]["quality_gap"] == pytest.approx(0.22) and res["b"]["quality_gap_floor"] == pytest.approx(0.20)
    # the same order as SDMetrics quality, descending: what the bench reports
    assert ch.rank_for("quality")(res) == sorted(res, key=lambda n: -res[n]["quality"]) == ["b", "a", "c"]
    # the excess over real rows' floor: above the floor is as good as real data
    assert ch.quality_excess(res["b"]) == pytest.approx(0.02)
    assert ch.quality_excess(table_row(0.9)) == 0.0


def test_tables_privacy_counts_near_copies_beyond_the_floor():
    res = {"copier": table_row(0.79, dcr=0.40), "honest": table_row(0.78, dcr=0.06), "exact": table_row(0.785, dcr=0.05, exact=0.3)}
    assert ch.rank_for("privacy")(res) == ["honest", "exact", "copier"]
    h = ch.Halving(rounds=[{"round": 1, "seconds_each": 1.0, "ranking": ["honest"], "results": {"honest": {"family": "honest", "round": 1, **res["honest"]}}}],
                   winner="honest")
    d = ch.decide(h, "privacy")
    assert "0.06 of samples nearer" in d["explanation"] and "1 - SDMetrics quality" in d["explanation"]


def test_a_tiny_table_choice_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(ch, "N_SAMPLES", 200)
    d = ch.choose("penguins", minutes=0.05, steps=5, families=["tvae", "ctgan"], out_dir=tmp_path, record=False)
    rows = d["evidence"]
    assert d["recommendation"] in ("tvae", "ctgan")
    for m in rows.values():
        assert "error" not in m, m
        assert m["quality_gap"] == pytest.approx(1 - m["quality"])
    assert d["recommendation"] == max(rows, key=lambda n: rows[n]["quality"])  # one round: the better quality wins
    assert "1 - SDMetrics quality" in (tmp_path / "choose.md").read_text()


def test_a_user_image_folder_gets_its_nll_in_every_round(tmp_path, monkeypatch):
    from PIL import Image

    from genzoo import api

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(100):  # 8x8 grey gradients with noise: a made-up user folder
        img = np.clip(np.outer(np.arange(8), np.ones(8)) * (i % 7) * 4 + rng.integers(0, 30, (8, 8)), 0, 255).astype(np.uint8)
        Image.fromarray(img, "L").save(folder / f"{i:02d}.png")
    monkeypatch.setattr(ch, "N_SAMPLES", 50)
    model, _ = api.train("realnvp", str(folder), out=tmp_path / "run", steps=3, seed=0, progress=False)
    m = ch._evaluate(model, str(folder), "realnvp", 0, nll=False)  # not the last round, goal quality
    key = ch.quality_key(m)
    assert key is not None and key[0].startswith("nll_nats") and np.isfinite(m[key[0]])


def test_ties_at_the_floor_go_to_the_better_raw_score_not_the_name():
    # penguins' 34 validation rows make a high floor (gap 0.23) that every family beat: all excesses 0
    res = {"copula": table_row(0.86, floor=0.77), "tabddpm": table_row(0.91, floor=0.77), "tvae": table_row(0.90, floor=0.77)}
    assert all(ch.quality_excess(m) == 0.0 for m in res.values())
    assert ch.rank_for("quality")(res) == ["tabddpm", "tvae", "copula"]

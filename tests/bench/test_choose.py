"""`genzoo choose`: the plan, successive halving on fake scores, a tiny real run, refusals."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from genzoo.bench import choose as ch
from genzoo.cli.main import app
from genzoo.core.errors import GenzooError


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def fake_run(scores, clock, log, overhead=1.0):
    def run(name, rnd, seconds):
        clock.t += seconds + overhead  # training takes its budget, plus a fixed overhead
        log.append((name, rnd, seconds))
        return {"family": name, "round": rnd, "score": scores[name] - 0.01 * rnd}
    return run


def by_score(results):
    return sorted(results, key=lambda n: results[n]["score"])


def test_halving_counts():
    assert ch.halving_counts(1) == [1]
    assert ch.halving_counts(2) == [2]
    assert ch.halving_counts(6) == [6, 3, 2]
    assert ch.halving_counts(8) == [8, 4, 2]
    assert ch.halving_counts(9) == [9, 5, 3, 2]


def test_better_half_advances_and_budget_is_respected():
    scores = {"a": 5.0, "b": 1.0, "c": 3.0, "d": 2.0, "e": 4.0, "f": 6.0}
    clock, log = FakeClock(), []
    h = ch.successive_halving(list(scores), 120.0, fake_run(scores, clock, log), by_score, overhead_s=1.0, clock=clock)
    assert [sorted(r["results"]) for r in h.rounds] == [sorted(scores), ["b", "c", "d"], ["b", "d"]]
    assert h.winner == "b"
    assert clock.t <= 120.0 + 1e-6  # the whole choice, training and overhead, within the one budget
    r1, r2, r3 = (r["seconds_each"] for r in h.rounds)
    assert r1 < r2 < r3  # survivors get longer runs
    assert sum(s for _, _, s in log) == pytest.approx(120.0 - len(log) * 1.0, rel=1e-6)


def test_a_failure_never_advances():
    scores = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    clock, log = FakeClock(), []
    base = fake_run(scores, clock, log)

    def run(name, rnd, seconds):
        return {"family": name, "round": rnd, "error": "boom"} if name == "a" else base(name, rnd, seconds)
    h = ch.successive_halving(list(scores), 60.0, run, by_score, clock=clock)
    assert sorted(h.rounds[1]["results"]) == ["b", "c"]
    assert h.winner == "b"
    assert h.rounds[0]["ranking"][-1] == "a"


def test_goal_rankings_on_fake_metrics():
    res = {
        "slowgood": {"mmd2": 0.001, "mmd2_floor": 0.0, "samples_per_second": 10, "parameters": 900, "nll_nats_per_point": 2.5},
        "fastok": {"mmd2": 0.0015, "mmd2_floor": 0.0, "samples_per_second": 1e5, "parameters": 100, "nll_nats_per_point": 2.9},
        "fastbad": {"mmd2": 0.2, "mmd2_floor": 0.0, "samples_per_second": 1e6, "parameters": 10},
    }
    assert ch.rank_for("quality")(res)[0] == "slowgood"
    assert ch.rank_for("likelihood")(res) == ["slowgood", "fastok", "fastbad"]
    assert ch.rank_for("speed")(res)[0] == "fastok"  # fastbad is faster but far from the data
    assert ch.rank_for("small-model")(res)[0] == "fastok"
    with pytest.raises(GenzooError):
        ch.rank_for("vibes")


def test_dry_run_prints_the_plan():
    r = CliRunner().invoke(app, ["choose", "--data", "toy2d:moons", "--minutes", "2", "--dry-run"])
    assert r.exit_code == 0, r.output
    for word in ("realnvp", "vae", "diffusion", "gan", "round 1", "round 3", "expected time"):
        assert word in r.output
    p = ch.dry_run("toy2d:moons", 2)
    assert p["expected_seconds"] == pytest.approx(120, rel=0.05)


def test_a_thin_budget_is_warned_with_the_budget_that_is_not():
    # at minimum_minutes, round 1 trains each candidate exactly one overhead long (plan() agrees)
    need = ch.minimum_minutes(4, 10.0)
    assert ch.plan(list("abcd"), need * 60, 10.0)[0]["seconds_each"] == pytest.approx(10.0)
    assert "no room for round 1's probe runs" in ch.budget_warning(4, need, 10.0)
    assert ch.budget_warning(4, ch.probe_minutes(4, 10.0), 10.0) is None
    full = ch.plan(list("abcd"), ch.probe_minutes(4, 10.0) * 60, 10.0)[0]  # from there, round 1 probes too
    assert full["seconds_each"] == pytest.approx(10.0) and full["probe_seconds_each"] == pytest.approx(10.0 * ch.PROBE)
    w = ch.budget_warning(4, 0.5, 10.0)
    assert "thin for 4 candidates" in w and f"--minutes {math.ceil(need * 10) / 10:g} or more" in w
    r = CliRunner().invoke(app, ["choose", "--data", "penguins", "--minutes", "0.5", "--dry-run"])
    assert r.exit_code == 0 and "warning: --minutes 0.5 is thin" in r.output


def test_refuses_a_missing_path_and_an_unknown_goal(tmp_path):
    r = CliRunner().invoke(app, ["choose", "--data", str(tmp_path / "no-such-folder"), "--minutes", "1"])
    assert r.exit_code == 2 and "no such data" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["choose", "--data", "toy2d:moons", "--goal", "vibes", "--dry-run"])
    assert r.exit_code == 2 and "unknown goal" in r.output


def test_a_tiny_real_run_writes_a_report_naming_the_recommendation(tmp_path, monkeypatch):
    monkeypatch.setattr(ch, "N_SAMPLES", 200)
    monkeypatch.setattr(ch, "NLL_TEST_MAX", 200)
    out = tmp_path / "ch"
    r = CliRunner().invoke(app, ["choose", "--data", "toy2d:moons", "--minutes", "0.3", "--steps", "40",
                                 "--families", "vae,realnvp,gan", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "recommend" in r.output
    report = (out / "choose.md").read_text()
    rec = r.output.split("recommend ", 1)[1].split()[0]
    assert rec in ("vae", "realnvp", "gan") and f"Recommend: {rec}" in report
    assert (out / "choose.json").is_file() and (out / "round1").is_dir()
    assert "recorded in the store" in r.output


def test_a_store_failure_keeps_the_report(tmp_path, monkeypatch):
    h = ch.Halving(rounds=[{"round": 1, "seconds_each": 1.0, "ranking": ["x"],
                            "results": {"x": {"family": "x", "round": 1, "mmd2": 0.1, "samples_per_second": 5.0, "parameters": 3}}}],
                   winner="x")
    d = ch.decide(h, "quality")
    d.update(data="toy2d:moons", kind="points", goal="quality", minutes=1, seed=0, candidates=["x"], wall_seconds=1.0)
    assert (ch.write_report(d, h, tmp_path)).is_file()
    from genzoo.store.api import Store

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(Store, "open", broken)
    gid, err = ch.record_decision(d, h)
    assert gid is None and "disk full" in err


def test_extrapolate_known_curves():
    curve = lambda t: 0.1 + 2.0 * t ** -0.5  # noqa: E731
    assert ch.extrapolate([(4, curve(4)), (36, curve(36))], 400) == pytest.approx(curve(400))
    assert ch.extrapolate([(1, curve(1)), (4, curve(4)), (16, curve(16))], 100) == pytest.approx(curve(100))
    assert ch.extrapolate([(10, 0.3), (30, 0.32)], 600) == 0.32  # worse with more training: noise, the longest run stands
    assert ch.extrapolate([(10, 0.3)], 600) == 0.3 and ch.extrapolate([], 600) == math.inf


def curve_run(curves, clock, log, overhead=1.0):
    def run(name, rnd, seconds):
        clock.t += seconds + overhead
        log.append((name, rnd, seconds))
        return {"family": name, "round": rnd, "train_seconds": seconds, "score": curves[name](seconds)}
    return run


def test_a_slow_starter_that_ends_best_survives_the_first_cut_and_wins():
    """The failure measured on tables (a copula done in seconds won every early cut against tvae, which ended best):
    the same shapes with known answers. Alone, halving picks the fast starter; with the curves, the slow one."""
    curves = {"fast": lambda t: 0.20, "slow": lambda t: 0.02 + 2.5 * t ** -0.5,
              "meh": lambda t: 0.25 + 0.3 * t ** -0.5, "bad": lambda t: 0.6}
    total, over = 600.0, 10.0
    assert ch.probes(4, total, over) == 4
    clock, log = FakeClock(), []
    plain = ch.successive_halving(list(curves), total, curve_run(curves, clock, log, over), by_score, overhead_s=over, clock=clock)
    assert plain.winner == "fast" and "slow" not in plain.rounds[1]["results"]  # cut after round 1: 0.33 against 0.29 and 0.2
    clock, log = FakeClock(), []
    key = lambda m: "score"  # noqa: E731
    h = ch.successive_halving(list(curves), total, curve_run(curves, clock, log, over), by_score, overhead_s=over, clock=clock,
                              predict=ch.curve_predictor(key, total))
    assert sorted(h.probes) == sorted(curves) and [rnd for _, rnd, _ in log[:4]] == [0, 0, 0, 0]
    probe_s, first_s = log[0][2], log[4][2]
    assert probe_s == pytest.approx(ch.PROBE * first_s)
    assert h.winner == "slow" and h.rounds[1]["predicted"]["slow"]["score"] == pytest.approx(curves["slow"](total))
    assert h.rounds[1]["predicted"]["slow"]["measured_score"] > h.rounds[1]["predicted"]["fast"]["measured_score"]
    assert clock.t <= total + 1e-6  # the probes fit inside the one budget

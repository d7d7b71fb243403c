"""`genzoo choose`: pick a family for a dataset and a goal from measurements, not folklore.

The candidates are the families the bench would compare on the data's kind
(``runner.eligible_families``). They share ONE total budget through successive
halving: every candidate gets a short run, the better half (on the goal) a
longer one, and so on until one is left. Each round trains from scratch with
the longer budget (no resuming: a finished run's learning-rate schedule has
already decayed), so every round's numbers are those of a complete run.

Slow starters are not cut on their start. Successive halving alone ranks on short runs, and the
neural table families start slow and end best (measured three times: tvae went from a gap of 0.31 at
10 s to 0.12 at 3 minutes on a user CSV, and the copula, done in seconds, won every early cut). So
round 1 also trains every candidate for a third of its round-1 budget (a probe), and every ranking
is on each family's score *predicted* at the whole budget from its own runs so far: the learning
curve s(t) = a + b t^(-1/2) (least squares over its runs; b >= 0: more training never predicted to hurt),
evaluated at t = --minutes. The rounds a family ran in give its points (a probe and round 1, then
round 2, ...); the report shows the measured and the predicted score side by side.

The budget is wall clock for the whole choice: before each round the time
left is split between the rounds still to come, after deducting the measured
cost of building, evaluating and saving a run (``overhead``), so that
``--minutes M`` ends near M minutes, training and evaluation together.

Evaluation is the project's ``genzoo.eval.evaluate`` (sample metrics with
their real-data floors, memorization) with a likelihood on a fixed subset of
the test split and diffusion's bound on a stratified subset of its timesteps
(``NLL_TEST_MAX``, ``NLL_OPTIONS``): a chooser must not spend its budget on the
exact all-timesteps bound that a full bench reports.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from genzoo.core.errors import GenzooError

GOALS = ("quality", "likelihood", "speed", "diversity", "privacy", "small-model")
MIN_RUN_SECONDS = 2.0  # a run shorter than this measures start-up, not a model
NLL_TEST_MAX = 1000  # test examples scored for the likelihood
NLL_OPTIONS = {"diffusion": {"timesteps_subset": 16}, "vae": {"k": 100}}
N_SAMPLES = 500
DEFAULT_OVERHEAD_S = {"points": 8.0, "image": 25.0, "tokens": 25.0,  # first guess; measured from round 1 on
                      "table": 10.0}  # evaluating 500 rows: 2 s (penguins) to 9 s (cancer) at load 3.2
GATE = 2.0  # speed / small-model / privacy: only among candidates within GATE x the best quality excess
PROBE = 1 / 3  # round 1's probe runs train this fraction of round 1's: two points of every learning curve, 3x apart
CURVE_POWER = 0.5  # s(t) = a + b t^-CURVE_POWER; fixed a priori (a power law in training time), not tuned on the validation cases


# ---- the plan --------------------------------------------------------------
def halving_counts(n: int) -> list[int]:
    """Candidates per round: n, ceil(n/2), ... down to 2 (the last round decides between two);
    one candidate needs one round."""
    counts = [n]
    while counts[-1] > 2:
        counts.append(math.ceil(counts[-1] / 2))
    return counts


def probes(n: int, total_seconds: float | None = None, overhead_s: float = 0.0) -> int:
    """Probe runs in round 1: one per candidate where there is a cut to make and the budget has room for them
    (``total_seconds`` at least ``minimum_minutes`` with probes); otherwise none, and a family's curve starts
    at round 2. Measured: with 6 candidates at 2 minutes, probes would leave every run the 2-s minimum."""
    if n < 2:
        return 0
    if total_seconds is not None and total_seconds < _minimum_seconds(n, overhead_s, n):
        return 0
    return n


def _minimum_seconds(n: int, overhead_s: float, extra: int) -> float:
    counts = halving_counts(n)
    return (sum(counts) + extra + len(counts) * n * (1 + PROBE if extra else 1)) * overhead_s


def plan(candidates: list[str], total_seconds: float, overhead_s: float) -> list[dict]:
    """Rounds with their candidate count and training seconds per run, the same share of the
    budget for every round (round 1's shared with its probes), after each run's expected overhead."""
    counts = halving_counts(len(candidates))
    extra = probes(len(candidates), total_seconds, overhead_s)
    runs = sum(counts) + extra
    train_total = max(total_seconds - runs * overhead_s, 0.0)
    per_round = train_total / len(counts)
    rounds = []
    for i, c in enumerate(counts):
        seconds = per_round / c / (1 + PROBE if i == 0 and extra else 1)
        rounds.append({"round": i + 1, "candidates": c, "seconds_each": max(seconds, MIN_RUN_SECONDS)})
        if i == 0 and extra:
            rounds[0]["probe_seconds_each"] = max(seconds * PROBE, MIN_RUN_SECONDS)
    return rounds


def minimum_minutes(n: int, overhead_s: float) -> float:
    """The budget at which round 1 trains each of ``n`` candidates at least as long as one run's overhead
    (building, evaluating, saving): below it the first cut is made on models that trained for a few
    seconds, and whatever starts fastest survives it. Measured: penguins at --minutes 0.5 (2-3 s of
    training a run) picked the copula twice while the 2.5-minute bench's best was tabddpm or tvae."""
    return _minimum_seconds(n, overhead_s, 0) / 60


def probe_minutes(n: int, overhead_s: float) -> float:
    """The budget from which round 1 also probes every candidate (see ``probes``)."""
    return _minimum_seconds(n, overhead_s, n) / 60 if n > 1 else math.inf


def budget_warning(n: int, minutes: float, overhead_s: float) -> str | None:
    need = minimum_minutes(n, overhead_s)
    if minutes >= need:
        probe = probe_minutes(n, overhead_s)
        if minutes >= probe:
            return None
        return (f"--minutes {minutes:g} leaves no room for round 1's probe runs (from --minutes {math.ceil(probe * 10) / 10:g}): "
                "the first cut ranks one short run per family, so a family that starts slow and ends best can be cut")
    return (f"--minutes {minutes:g} is thin for {n} candidates: round 1 trains each for less than the ~{overhead_s:.0f} s "
            f"it takes to build and evaluate one, so the first cut favours families that start fast over ones that end "
            f"best; --minutes {math.ceil(need * 10) / 10:g} or more gives round 1 at least that")


def expected_seconds(rounds: list[dict], overhead_s: float) -> float:
    return sum(r["candidates"] * (r["seconds_each"] + overhead_s + (r["probe_seconds_each"] + overhead_s if "probe_seconds_each" in r else 0))
               for r in rounds)


# ---- learning curves -------------------------------------------------------
def extrapolate(points: list[tuple[float, float]], horizon: float) -> float:
    """s(horizon) from (train seconds, score) points, lower is better: s(t) = a + b t^-CURVE_POWER by least
    squares, with b >= 0 (a fit that says more training hurts is noise: the longest run's score stands)."""
    pts = sorted((float(t), float(v)) for t, v in points if t and t > 0 and v is not None and math.isfinite(v))
    if not pts:
        return math.inf
    if len({t for t, _ in pts}) < 2:
        return pts[-1][1]
    import numpy as np

    b, a = np.polyfit([t ** -CURVE_POWER for t, _ in pts], [v for _, v in pts], 1)
    if b <= 0:
        return pts[-1][1]
    return float(a + b * horizon ** -CURVE_POWER)


def curve_predictor(key_of: Callable[[dict], str | None], horizon: float) -> Callable[[list[dict]], dict]:
    """history (a family's results, oldest first) -> its latest result with the score under ``key_of`` replaced by
    the one extrapolated to ``horizon`` training seconds (and the measured one kept as ``measured_<key>``)."""
    def predict(history: list[dict]) -> dict:
        latest = dict(history[-1])
        key = key_of(latest)
        if key is None or latest.get(key) is None:
            return latest
        points = [(r.get("train_seconds"), r.get(key)) for r in history if r.get(key) is not None]
        latest["measured_" + key], latest["curve_key"] = latest[key], key
        latest[key] = extrapolate(points, horizon)
        latest["curve_points"] = len(points)
        return latest
    return predict


# ---- successive halving (generic: unit-tested with fake runs) ---------------
@dataclass
class Halving:
    rounds: list[dict] = field(default_factory=list)  # {"round", "seconds_each", "results": {name: result}, "ranking": [...]}
    winner: str | None = None
    seconds: float = 0.0
    probes: dict = field(default_factory=dict)  # round 1's probe results by name (with a predictor)


def successive_halving(
    candidates: list[str],
    total_seconds: float,
    run: Callable[[str, int, float], dict],
    rank: Callable[[dict[str, dict]], list[str]],
    *,
    overhead_s: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    predict: Callable[[list[dict]], dict] | None = None,
) -> Halving:
    """Run every candidate for a short budget, keep the better half by ``rank``, run them longer...

    ``run(name, round, seconds)`` trains and evaluates one candidate and returns its result (a dict;
    ``"error"`` in it marks a failure: ranked last, never advanced). ``rank(results)`` orders the names
    of one round best first. Before each round the time left (``total_seconds`` minus what the
    rounds so far took, by ``clock``) is split evenly between the rounds to come, less the
    overhead per run, measured from the rounds so far (``overhead_s`` before any).

    With ``predict`` (history of one family's results -> the result to rank it by, e.g. ``curve_predictor``),
    round 1 first runs every candidate for PROBE of its round-1 budget (``run(name, 0, seconds)``), and
    each round ranks ``predict(that family's results so far)`` instead of its latest result."""
    if not candidates:
        raise GenzooError("no candidates to choose from")
    start = clock()
    out = Halving()
    alive = list(candidates)
    counts = halving_counts(len(alive))
    extra = probes(len(alive), total_seconds, overhead_s) if predict else 0
    history: dict[str, list[dict]] = {n: [] for n in alive}
    overheads: list[float] = []

    def timed(name, rnd, seconds):
        t0 = clock()
        r = run(name, rnd, seconds)
        overheads.append(max(clock() - t0 - seconds, 0.0))
        if "error" not in r:
            history[name].append(r)
        return r

    for i in range(len(counts)):
        left = total_seconds - (clock() - start)
        rounds_left = counts[i:]
        probing = i == 0 and extra
        over = sum(overheads) / len(overheads) if overheads else overhead_s
        train_left = max(left - (sum(rounds_left) + (extra if probing else 0)) * over, 0.0)
        seconds = max(train_left / len(rounds_left) / len(alive) / (1 + PROBE if probing else 1), MIN_RUN_SECONDS)
        if probing:
            out.probes = {name: timed(name, 0, max(seconds * PROBE, MIN_RUN_SECONDS)) for name in alive}
        results = {name: timed(name, i + 1, seconds) for name in alive}
        ok = {n: r for n, r in results.items() if "error" not in r}
        view = {n: predict(history[n]) for n in ok} if predict else ok
        ranking = rank(view)
        ranking += [n for n in alive if n not in ranking]  # failures last
        out.rounds.append({"round": i + 1, "seconds_each": seconds, "results": results, "ranking": ranking,
                           **({"predicted": view} if predict else {})})
        if i + 1 < len(counts):
            alive = [n for n in ranking if "error" not in results[n]][: counts[i + 1]] or ranking[:1]
    last = out.rounds[-1]
    ok = [n for n in last["ranking"] if "error" not in last["results"][n]]
    out.winner = ok[0] if ok else None
    out.seconds = clock() - start
    return out


# ---- scoring ----------------------------------------------------------------
def quality_key(metrics: dict) -> tuple[str, str] | None:
    """(metric, label) that measures sample quality here, lower is better."""
    if "fd_digits" in metrics:
        return "fd_digits", "FD (digits features)"
    if "mmd2" in metrics:
        return "mmd2", "MMD²"
    if "fd_audio" in metrics:
        return "fd_audio", "FD (listener features)"
    if "quality_gap" in metrics:  # tables, from with_table_gap
        return "quality_gap", "1 - SDMetrics quality"
    nll = nll_key(metrics)
    return (nll, "test NLL") if nll else None


def with_table_gap(metrics: dict) -> dict:
    """A table's quality as a gap, lower is better like every other quality metric here.

    The bench ranks tables by SDMetrics' overall ``quality`` (higher is better, 1 = the training
    rows' own distributions). Its gap 1 - quality orders families exactly as quality does (a
    monotone map), and makes "within 10% of the best" mean 10% of what is left to gain, not
    10% of a score near 0.9 (which would call almost anything a hit). Its floor is the same gap
    for real validation rows, so the excess over the floor is max(quality_floor - quality, 0)."""
    if metrics.get("quality") is not None and "table_rows" in metrics:
        metrics["quality_gap"] = 1.0 - float(metrics["quality"])
        if metrics.get("quality_floor") is not None:
            metrics["quality_gap_floor"] = 1.0 - float(metrics["quality_floor"])
    return metrics


def nll_key(metrics: dict) -> str | None:
    for k in ("nll_nats_per_image", "nll_nats_per_point", "nll_nats_per_token", "test_nll_nats_per_token"):
        if metrics.get(k) is not None:
            return k
    return next((k for k in metrics if k.startswith("nll_nats") and isinstance(metrics[k], (int, float))), None)


def quality_excess(m: dict) -> float | None:
    """How far the quality metric is above its real-data floor (0 = as good as real data)."""
    key = quality_key(m)
    if not key or m.get(key[0]) is None:
        return None
    v = float(m[key[0]])
    floor = m.get(key[0] + "_floor")
    return max(v - float(floor), 0.0) if floor is not None else v


def rank_for(goal: str) -> Callable[[dict[str, dict]], list[str]]:
    """A ranking of one round's results for ``goal``, best first."""
    if goal not in GOALS:
        raise GenzooError(f"unknown goal {goal!r}; choose one of {', '.join(GOALS)}")

    def quality(m):
        q = quality_excess(m)
        return math.inf if q is None else q

    def raw(m):  # breaks ties at the floor: without it, families at or below real data's floor tie, and sort by name
        key = quality_key(m)
        return math.inf if key is None or m.get(key[0]) is None else float(m[key[0]])

    def rank(results: dict[str, dict]) -> list[str]:
        names = list(results)
        if not names:
            return []
        if goal == "quality":
            return sorted(names, key=lambda n: (quality(results[n]), raw(results[n])))
        if goal == "likelihood":
            def nll(n):
                k = nll_key(results[n])
                return results[n][k] if k else math.inf
            return sorted(names, key=lambda n: (nll(n), quality(results[n])))
        if goal == "diversity":
            def div(n):
                m = results[n]
                for k in ("recall", "coverage"):
                    if m.get(k) is not None:
                        return -float(m[k])
                return quality(m)  # no recall here (points, text): closeness to the data covers it
            return sorted(names, key=lambda n: (div(n), quality(results[n])))
        best = min(quality(results[n]) for n in names)
        tol = abs(best) + 1e-6 if best != math.inf else math.inf

        def gated(n):  # 0 within GATE x the best quality excess (plus a little slack), 1 beyond
            return 0 if quality(results[n]) <= GATE * best + tol * 0.5 or best == math.inf else 1
        if goal == "speed":
            return sorted(names, key=lambda n: (gated(n), -float(results[n].get("samples_per_second") or 0.0)))
        if goal == "small-model":
            return sorted(names, key=lambda n: (gated(n), results[n].get("parameters") or math.inf))
        # privacy: fewest near-copies beyond what real held-out data shows
        def copying(n):
            m = results[n]
            share_key, exact_key = _copy_keys(m)
            if m.get(share_key) is None:
                return math.inf
            return max(float(m[share_key]) - float(m.get(share_key + "_floor") or 0.0), 0.0) + float(m.get(exact_key) or 0.0)
        return sorted(names, key=lambda n: (gated(n), copying(n), quality(results[n])))

    return rank


# ---- the real thing --------------------------------------------------------
def candidates_for(data: str) -> tuple[str, list[str]]:
    """(data kind, eligible families); refuses a missing path or a kind no family handles."""
    from genzoo.bench.runner import eligible_families
    from genzoo.data import load_dataset

    if ("/" in data or data.startswith(".") or Path(data).suffix) and not Path(data).exists():
        raise GenzooError(f"no such data: {data} (give a built-in dataset name from `genzoo list` or an existing path)")
    try:
        kind = load_dataset(data, "train").kind
    except GenzooError:
        raise
    except (OSError, ValueError) as e:
        raise GenzooError(f"cannot read data {data}: {e}") from None
    names = eligible_families(kind)
    if not names:
        raise GenzooError(f"no generative family handles {kind} data ({data}); see `genzoo list`")
    return kind, names


def dry_run(data: str, minutes: float, goal: str = "quality", families: list[str] | None = None) -> dict:
    kind, names = candidates_for(data)
    names = families or names
    overhead = DEFAULT_OVERHEAD_S.get(kind, 20.0)
    rounds = plan(names, minutes * 60, overhead)
    return {"data": data, "kind": kind, "goal": goal, "candidates": names, "rounds": rounds, "overhead_s_per_run": overhead,
            "expected_seconds": expected_seconds(rounds, overhead), "budget_warning": budget_warning(len(names), minutes, overhead)}


def format_plan(p: dict) -> str:
    lines = [f"plan for {p['data']} ({p['kind']} data), goal {p['goal']}: {len(p['candidates'])} candidates: {', '.join(p['candidates'])}"]
    for r in p["rounds"]:
        if "probe_seconds_each" in r:
            lines.append(f"  probe:   {r['candidates']} runs x {r['probe_seconds_each']:.1f} s training (every candidate: "
                         "the first point of its learning curve)")
        who = "every candidate" if r["round"] == 1 else f"the best {r['candidates']} of round {r['round'] - 1}"
        lines.append(f"  round {r['round']}: {r['candidates']} runs x {r['seconds_each']:.1f} s training ({who})")
    lines.append(f"expected time: about {p['expected_seconds']:.0f} s ({p['expected_seconds'] / 60:.1f} min), "
                 f"counting ~{p['overhead_s_per_run']:.0f} s per run to build, evaluate and save")
    if p.get("budget_warning"):
        lines.append(f"warning: {p['budget_warning']}")
    return "\n".join(lines)


def _evaluate(model, data: str, family: str, seed: int, nll: bool = True) -> dict:
    from genzoo.data import load_dataset
    from genzoo.eval import evaluate
    from genzoo.eval.report import LOG_PROB, likelihood_metrics

    metrics = with_table_gap(evaluate(model, data, n_samples=N_SAMPLES, nll=False, seed=seed))
    # no sample-quality metric here (a user's folder of images: no feature network knows them): the test NLL is the
    # quality, so every round needs it, or every candidate would tie at "unknown" and halving would keep them by name
    nll = nll or quality_key(metrics) is None  # no NLL is in metrics yet: None means no sample-quality metric
    if nll and LOG_PROB in set(getattr(model, "capabilities", ())) and load_dataset(data, "train").kind != "tokens":
        test = load_dataset(data, "test")
        sub = SimpleNamespace(x=test.x[:NLL_TEST_MAX], kind=test.kind, dims=test.dims)
        try:
            metrics.update(likelihood_metrics(model, sub, seed=seed, batch_size=500, options=NLL_OPTIONS.get(family), say=lambda *_: None))
            metrics["nll_test_n"] = len(sub.x)
        except GenzooError as e:
            metrics["nll_error"] = str(e)
    return metrics


def choose(
    data: str,
    *,
    goal: str = "quality",
    minutes: float = 5.0,
    out_dir: str | Path = "choose_runs",
    families: list[str] | None = None,
    seed: int = 0,
    steps: int | None = None,
    say: Callable[[str], None] = lambda *_: None,
    record: bool = True,
) -> dict:
    """Train, halve, recommend; write the report into ``out_dir`` and record the decision in the store.
    ``steps`` (tests) caps every run at that many steps, whatever its time budget."""
    from genzoo import api

    rank = rank_for(goal)
    kind, names = candidates_for(data)
    names = families or names
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = data.replace(":", "-").replace("/", "_")

    def run(name: str, rnd: int, seconds: float) -> dict:
        run_dir = out_dir / ("probe" if rnd == 0 else f"round{rnd}") / f"{name}-{slug}"
        t0 = time.perf_counter()
        try:
            model, summary = api.train(name, data, out=run_dir, minutes=seconds / 60, steps=steps, seed=seed, progress=False)
            t1 = time.perf_counter()
            # the likelihood (slow for bounds) only where the goal ranks on it, or for the report's last round
            metrics = _evaluate(model, data, name, seed, nll=goal == "likelihood" or rnd == len(halving_counts(len(names))))
        except (GenzooError, FloatingPointError, RuntimeError, ValueError) as e:  # one family failing must not sink the choice
            say(f"  {'probe' if rnd == 0 else f'round {rnd}'}: {name} failed: {str(e).splitlines()[0][:200]}")
            return {"family": name, "round": rnd, "error": str(e)[:500], "run": str(run_dir)}
        row = {"family": name, "round": rnd, "run": str(run_dir), "budget_seconds": round(seconds, 1),
               "train_steps": summary["steps"], "train_seconds": summary["train_seconds"],
               "eval_seconds": round(time.perf_counter() - t1, 1), "wall_seconds": round(time.perf_counter() - t0, 1), **metrics}
        (run_dir / "choose_eval.json").write_text(json.dumps(row, indent=2, default=str))
        q = quality_key(row)
        qtxt = f"{q[1]} {row[q[0]]:.4g}" if q else "no quality metric"
        say(f"  {'probe  ' if rnd == 0 else f'round {rnd}'}: {name:<15} {summary['steps']:>6} steps in {summary['train_seconds']:.0f} s, {qtxt}, "
            f"{row.get('samples_per_second', 0):.0f} samples/s")
        return row

    overhead = DEFAULT_OVERHEAD_S.get(kind, 20.0)
    say(f"choosing among {len(names)} families for {data} ({kind}), goal {goal}, budget {minutes:g} min")
    warning = budget_warning(len(names), minutes, overhead)
    if warning:
        say(f"warning: {warning}")
    def score_key(m: dict) -> str | None:  # what the goal ranks on first, which training time improves
        if goal == "likelihood":
            return nll_key(m)
        q = quality_key(m)
        return q[0] if q else None

    result = successive_halving(names, minutes * 60, run, rank, overhead_s=overhead,
                                predict=curve_predictor(score_key, horizon=minutes * 60))
    decision = decide(result, goal)
    decision.update(data=data, kind=kind, goal=goal, minutes=minutes, seed=seed, candidates=names, wall_seconds=round(result.seconds, 1),
                    budget_warning=warning, probes=sorted(result.probes))
    report = write_report(decision, result, out_dir)
    decision["report"] = str(report)
    (out_dir / "choose.json").write_text(json.dumps({**decision, "rounds": _rounds_json(result)}, indent=2, default=str))
    if record:
        decision["store_id"], decision["store_error"] = record_decision(decision, result)
    return decision


def _latest(result: Halving) -> dict[str, dict]:
    """Each candidate's result from the last round it ran in."""
    latest: dict[str, dict] = {}
    for r in result.rounds:
        latest.update(r["results"])
    return latest


def _plain(rows: dict) -> dict:
    return {n: {k: v for k, v in m.items() if isinstance(v, (int, float, str)) or v is None} for n, m in rows.items()}


def _rounds_json(result: Halving) -> list[dict]:
    out = [{"round": 0, "probe": True, "results": _plain(result.probes)}] if result.probes else []
    return out + [{"round": r["round"], "seconds_each": round(r["seconds_each"], 1), "ranking": r["ranking"],
                   "results": _plain(r["results"]), **({"predicted": _plain(r["predicted"])} if "predicted" in r else {})}
                  for r in result.rounds]


def _fmt(v, digits=4) -> str:
    return "-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v))


def _copy_keys(m: dict) -> tuple[str, str]:
    """(near-copy share key, exact-copy share key): images, points, audio from genzoo.eval.memorization;
    tables from the DCR of genzoo.eval.tables (the same idea: the share of samples nearer a training
    example than 95% of held-out examples are, beside real data's)."""
    if m.get("copy_nn_below_p5_share") is not None:
        return "copy_nn_below_p5_share", "copy_exact_share"
    return "dcr_below_test_p5", "exact_copies"


def _near_copies(m: dict) -> tuple[float | None, float | None]:
    """(share of samples nearer a training example than 95% of held-out ones, its real-data floor)."""
    key = _copy_keys(m)[0]
    return m.get(key), m.get(key + "_floor")


def decide(result: Halving, goal: str) -> dict:
    """The recommendation with a sentence of evidence from the numbers."""
    latest = _latest(result)
    w = result.winner
    if w is None:
        return {"recommendation": None, "explanation": "every candidate failed; see the report", "evidence": latest}
    m = latest[w]
    final = result.rounds[-1]
    others = [n for n in final["ranking"] if n != w and "error" not in final["results"][n]]
    q = quality_key(m)
    bits = []
    if goal == "likelihood" and nll_key(m):
        bits.append(f"lowest test NLL ({m[nll_key(m)]:.3g} nats, {m.get('likelihood', '?')})")
    elif goal == "speed":
        bits.append(f"fastest sampler within {GATE:g}x of the best quality ({m.get('samples_per_second', 0):.0f} samples/s)")
    elif goal == "small-model":
        bits.append(f"fewest parameters ({m.get('parameters'):,}) within {GATE:g}x of the best quality")
    elif goal == "privacy":
        share, floor = _near_copies(m)
        bits.append(f"fewest near-copies of training data ({_fmt(share, 3)} of samples nearer a training "
                    f"example than 95% of held-out ones; floor {_fmt(floor, 3)})")
    elif goal == "diversity" and m.get("recall") is not None:
        bits.append(f"highest recall ({m['recall']:.3f}, floor {_fmt(m.get('recall_floor'), 3)})")
    if q:
        floor = m.get(q[0] + "_floor")
        best = "best " if goal in ("quality", "diversity") else ""
        bits.append(f"{best}{q[1]} {m[q[0]]:.4g}" + (f" (real-data floor {floor:.4g})" if floor is not None else ""))
    if goal != "likelihood" and nll_key(m):
        bits.append(f"test NLL {m[nll_key(m)]:.3g} nats ({m.get('likelihood', '?')})")
    bits.append(f"{m.get('samples_per_second', 0):.0f} samples/s, {m.get('parameters', 0):,} parameters")
    predicted = final.get("predicted", {}).get(w, {})
    key = predicted.get("curve_key")
    if key and predicted.get("curve_points", 0) > 1:
        bits.append(f"{predicted[key]:.4g} predicted for a run of the whole budget from its learning curve ({predicted['curve_points']} runs)")
    text = f"{w}: " + "; ".join(bits) + f", after {len(result.rounds)} round(s) of successive halving"
    # the trade-off: whoever beats the winner on another axis, and at what cost
    contrasts = []
    pool = {n: r for n, r in latest.items() if "error" not in r and n != w}
    if q and pool:
        better_q = [n for n, r in pool.items() if r.get(q[0]) is not None and r[q[0]] < m[q[0]]]
        if better_q:
            n = min(better_q, key=lambda n: pool[n][q[0]])
            r = pool[n]
            ratio = (m.get("samples_per_second") or 0) / max(r.get("samples_per_second") or 1e-9, 1e-9)
            cost = f"samples {ratio:.0f}x slower" if ratio >= 1.5 else (f"has {r.get('parameters', 0) / max(m.get('parameters', 1), 1):.1f}x the parameters"
                                                                          if goal == "small-model" else "")
            contrasts.append(f"{n} reaches a lower {q[1]} ({r[q[0]]:.4g}, round {r['round']})" + (f" but {cost}" if cost else ""))
    fast = max(pool, key=lambda n: pool[n].get("samples_per_second") or 0, default=None) if pool else None
    if fast and (pool[fast].get("samples_per_second") or 0) > 1.5 * (m.get("samples_per_second") or 0) and q and pool[fast].get(q[0]) is not None:
        contrasts.append(f"{fast} samples {pool[fast]['samples_per_second'] / max(m.get('samples_per_second') or 1e-9, 1e-9):.0f}x faster "
                         f"at {q[1]} {pool[fast][q[0]]:.4g}")
    if others:
        contrasts.append(f"runner-up in the last round: {others[0]}")
    if contrasts:
        text += "; " + "; ".join(contrasts)
    return {"recommendation": w, "explanation": text, "evidence": latest}


def write_report(decision: dict, result: Halving, out_dir: Path) -> Path:
    """choose.md (the table and the rounds) and choose_tradeoff.png (quality vs sampling speed,
    bubble area ~ parameters) in ``out_dir``."""
    latest = decision["evidence"]
    plot = out_dir / "choose_tradeoff.png"
    plot_ok = _plot(latest, plot, decision.get("recommendation"))
    any_m = next((m for m in latest.values() if "error" not in m), {})
    q = quality_key(any_m)
    nk = nll_key(any_m) or "nll_nats_per_point"
    lines = [f"# genzoo choose: {decision['data']} ({decision['kind']}), goal {decision['goal']}, {decision['minutes']:g} min", "",
             f"**Recommend: {decision['recommendation']}** — {decision['explanation']}.", "",
             f"Successive halving over {len(decision['candidates'])} families in {decision['wall_seconds']:.0f} s wall "
             f"(training and evaluation); each round trains from scratch with a longer budget. Each family's row is from "
             f"the last round it reached. Metrics: `genzoo.eval.evaluate` ({N_SAMPLES} samples, floors = the same metric "
             f"on real data); NLL (measured in the last round, or in every round for the likelihood goal) on the first {NLL_TEST_MAX} test examples (diffusion: bound on {NLL_OPTIONS['diffusion']['timesteps_subset']} stratified timesteps; VAE: IWAE k={NLL_OPTIONS['vae']['k']}).", "",
             f"| family | round reached | train s | steps | params | {q[1] if q else 'quality'} | floor | NLL nats | NLL is | samples/s | NN<p5 (floor) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = [n for r in reversed(result.rounds) for n in r["ranking"]]
    seen = []
    for n in order:
        if n in seen:
            continue
        seen.append(n)
        m = latest[n]
        if "error" in m:
            lines.append(f"| {n} | {m['round']} | failed: {m['error'][:80]} | | | | | | | | |")
            continue
        lines.append(f"| {n} | {m['round']} | {_fmt(m.get('train_seconds'), 3)} | {m.get('train_steps')} | {m.get('parameters', 0):,} | "
                     f"{_fmt(m.get(q[0]) if q else None)} | {_fmt(m.get(q[0] + '_floor') if q else None)} | {_fmt(m.get(nk))} | "
                     f"{m.get('likelihood', '-')} | {_fmt(m.get('samples_per_second'), 4)} | "
                     "{} ({}) |".format(*(_fmt(v, 3) for v in _near_copies(m))))
    lines += ["", "## Rounds", ""]
    if result.probes:
        lines.append(f"- probe: {len(result.probes)} runs x {PROBE:.2g} of round 1's budget (each family's first learning-curve point)")
    for r in result.rounds:
        line = (f"- round {r['round']}: {len(r['results'])} runs x {r['seconds_each']:.1f} s; ranking on {decision['goal']}: "
                + " > ".join(r["ranking"]))
        predicted = r.get("predicted", {})
        shown = [f"{n} {_fmt(p[p['curve_key']])} (measured {_fmt(p['measured_' + p['curve_key']])})"
                 for n in r["ranking"] for p in [predicted.get(n, {})] if "curve_key" in p]
        lines.append(line + (f"; predicted for the whole budget: {', '.join(shown)}" if shown else ""))
    if plot_ok:
        lines += ["", f"![quality vs sampling speed]({plot.name})", "",
                  "Trade-off: quality (lower is better) against samples per second; bubble area ~ parameters."]
    lines += ["", f"Runs kept under {out_dir}/roundN/. Decision and evidence: choose.json."]
    path = out_dir / "choose.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot(latest: dict, path: Path, winner: str | None) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pts = []
    for n, m in latest.items():
        q = quality_key(m) if "error" not in m else None
        if q and m.get(q[0]) is not None and m.get("samples_per_second"):
            pts.append((n, m["samples_per_second"], m[q[0]], m.get("parameters") or 1, q[1], m.get(q[0] + "_floor")))
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.2))
    biggest = max(p[3] for p in pts)
    for n, sps, qv, params, label, floor in pts:
        ax.scatter(sps, qv, s=40 + 1200 * params / biggest, alpha=0.5, edgecolors="k",
                   color="tab:red" if n == winner else "tab:blue")
        ax.annotate(f"{n}\n{params:,} p", (sps, qv), fontsize=7, ha="center", va="center")
    floors = [p[5] for p in pts if p[5] is not None]
    if floors:
        ax.axhline(floors[0], ls="--", c="gray", lw=0.8, label="real-data floor")
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("samples per second (log)")
    ax.set_ylabel(f"{pts[0][4]} (lower is better)")
    ax.set_title("genzoo choose: quality vs sampling speed (bubble = parameters)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def record_decision(decision: dict, result: Halving) -> tuple[int | None, str | None]:
    """A text generation (family "choose") whose manifest holds the evidence; a store failure is
    returned, never raised: the report on disk is the decision's first home."""
    try:
        from genzoo.store.api import Store
        from genzoo.store.records import NewGeneration

        manifest = {k: v for k, v in decision.items() if k not in ("evidence",)}
        manifest["rounds"] = _rounds_json(result)
        store = Store.open()
        try:
            gid = store.record(NewGeneration(kind="text", text=f"recommend {decision['recommendation']}: {decision['explanation']}",
                                             prompt=f"genzoo choose --data {decision['data']} --goal {decision['goal']} --minutes {decision['minutes']:g}",
                                             manifest=json.loads(json.dumps(manifest, default=str)), family="choose",
                                             seed=decision.get("seed"), synthetic=True))
        finally:
            store.close()
        return gid, None
    except Exception as e:  # noqa: BLE001 - any store failure: the report is already written
        return None, f"{type(e).__name__}: {e}"

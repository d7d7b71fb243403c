"""Is `genzoo choose` right? Its pick at M minutes against the best family of a full bench at 5M minutes.

For each data set the chooser was not tuned on (it was built and tested on digits and toy2d:moons):

1. ``choose(data, minutes=M, goal)``: successive halving over every family that accepts the data;
2. the full bench: every one of those families trained for 5M / n minutes (the same total as
   five choosers), evaluated by the same ``_evaluate`` (same samples, same floors), ranked by the
   same goal;
3. the verdict: the pick is "best" if it is the bench's winner, "within 10%" if its bench score
   is at most 10% above the winner's, else "missed" — judged twice: on the raw metric (FD or MMD²,
   lower is better) and on its excess over the real-data floor (what the chooser ranks by: two
   families both at or below the floor are equally good, whatever the sampling noise below it).

Each case is appended to a JSON-lines file as it finishes (a killed run keeps what it measured);
``render`` prints the table for benchmarks/choose_validation.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/choose_validation.py run --minutes 2 \
        --data toy2d:circles toy2d:8gaussians toy2d:pinwheel toy2d:checkerboard
    .venv/bin/python benchmarks/choose_validation.py render
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from genzoo import api
from genzoo.bench import choose as C

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "choose_validation.jsonl"
TOLERANCE = 0.10


def full_bench(data: str, names: list[str], minutes_each: float, goal: str, out: Path, seed: int) -> dict[str, dict]:
    rows = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            model, summary = api.train(name, data, out=out / name, minutes=minutes_each, seed=seed, progress=False)
            m = C._evaluate(model, data, name, seed, nll=goal == "likelihood")
            rows[name] = {"steps": summary["steps"], "train_seconds": summary["train_seconds"], **m}
        except Exception as e:  # noqa: BLE001 - one family failing is a result, not a crash of the benchmark
            rows[name] = {"error": str(e)[:300]}
        print(f"  bench {name:<15} {time.perf_counter() - t0:6.0f} s  {_score(rows[name])}", flush=True)
    return rows


def _floor(m: dict) -> float | None:
    key = C.quality_key(m)
    return None if key is None or m.get(key[0] + "_floor") is None else float(m[key[0] + "_floor"])


def verdict(pick, best, pick_score, best_score) -> str:
    if pick == best:
        return "best"
    if pick_score is not None and best_score is not None and pick_score <= best_score * (1 + TOLERANCE) + 1e-12:
        return "within 10%"
    return "missed"


def _score(m: dict) -> float | None:
    key = C.quality_key(m)
    return None if key is None or m.get(key[0]) is None else float(m[key[0]])


def one_case(data: str, minutes: float, goal: str, out: Path, seed: int) -> dict:
    t0 = time.perf_counter()
    decision = C.choose(data, goal=goal, minutes=minutes, out_dir=out / "choose", seed=seed, record=False,
                        say=lambda s: print(s, flush=True))
    choose_s = time.perf_counter() - t0
    names = decision["candidates"]
    t1 = time.perf_counter()
    bench = full_bench(data, names, 5 * minutes / len(names), goal, out / "bench", seed)
    bench_s = time.perf_counter() - t1
    ok = {n: m for n, m in bench.items() if "error" not in m}
    ranking = C.rank_for(goal)(ok)
    best = ranking[0] if ranking else None
    pick = decision.get("recommendation")
    pick_score, best_score = _score(bench.get(pick, {})), _score(bench.get(best, {}))
    floor = next((_floor(m) for m in ok.values() if _floor(m) is not None), None)
    return {"data": data, "goal": goal, "minutes": minutes, "seed": seed, "pick": pick, "bench_best": best,
            "pick_score": pick_score, "best_score": best_score, "metric": (C.quality_key(bench.get(best, {})) or ("?",))[0],
            "bench_ranking": ranking, "bench_scores": {n: _score(m) for n, m in bench.items()},
            "floor": floor, "verdict": verdict(pick, best, pick_score, best_score), "choose_seconds": round(choose_s, 1), "bench_seconds": round(bench_s, 1),
            "threads": torch.get_num_threads()}


def floor_verdict(r: dict) -> str:
    """The verdict on the excess over the real-data floor; the bench's best re-ranked on it."""
    if r.get("floor") is None:
        return "-"
    excess = {n: max(v - r["floor"], 0.0) for n, v in r["bench_scores"].items() if v is not None}
    best = min(excess, key=lambda n: (excess[n], n))
    if excess.get(r["pick"]) == excess[best]:
        return "best" + (" (tied at the floor)" if excess[best] == 0.0 else "")
    return verdict(r["pick"], best, excess.get(r["pick"]), excess[best])


def render(path: Path = RESULTS) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| data | goal | chooser (M min) | its pick | full bench (5M min) best | pick's bench score | best's | real-data floor "
             "| verdict (raw) | verdict (over the floor) | chooser s | bench s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        lines.append(f"| {r['data']} | {r['goal']} | {r['minutes']:g} | {r['pick']} | {r['bench_best']} | {f(r['pick_score'])} "
                     f"| {f(r['best_score'])} ({r['metric']}) | {f(r.get('floor'))} | {r['verdict']} | {floor_verdict(r)} "
                     f"| {r['choose_seconds']:.0f} | {r['bench_seconds']:.0f} |")
    good = sum(r["verdict"] != "missed" for r in rows)
    good_floor = sum(floor_verdict(r) not in ("missed", "-") for r in rows)
    lines.append("")
    lines.append(f"raw metric: {good} of {len(rows)} cases best or within 10% of the best ({100 * good / max(len(rows), 1):.0f}%); "
                 f"over the floor: {good_floor} of {len(rows)} ({100 * good_floor / max(len(rows), 1):.0f}%); "
                 f"chooser time {sum(r['choose_seconds'] for r in rows) / max(sum(r['bench_seconds'] for r in rows), 1):.2f}x the full bench's")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", nargs="+", required=True)
    r.add_argument("--minutes", type=float, default=2.0)
    r.add_argument("--goal", default="quality", choices=C.GOALS)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default="/tmp/choose_validation")
    sub.add_parser("render")
    a = p.parse_args(argv)
    if a.cmd == "render":
        print(render())
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for data in a.data:
        print(f"== {data}", flush=True)
        row = one_case(data, a.minutes, a.goal, Path(a.out) / data.replace(":", "-").replace("/", "_"), a.seed)
        print(json.dumps(row), flush=True)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    print(render())


if __name__ == "__main__":
    sys.exit(main())

"""RealNVP and Glow on every toy2d set: test NLL (nats/point) and the learned density beside the data.

    .venv/bin/python benchmarks/toy2d_flows.py --steps 5000 --out benchmarks/results/toy2d

Each run trains with the family's default points config and settings, except
the step count; the Trainer writes ``density.png`` into the run folder and
this script copies it next to the table. The NLL is exact (continuous data),
on the 10,000 fixed test points, with the standard error over points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.data.toy2d import GENERATORS

FAMILIES = ("realnvp", "glow")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--sets", default=",".join(sorted(GENERATORS)))
    ap.add_argument("--runs", type=Path, default=Path("bench_runs/toy2d"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/toy2d"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for shape in args.sets.split(","):
        test = load_dataset(f"toy2d:{shape}", "test")
        for family in FAMILIES:
            run = args.runs / f"{family}-{shape}"
            if run.exists():
                shutil.rmtree(run)
            t0 = time.perf_counter()
            model, summary = api.train(family, f"toy2d:{shape}", out=run, steps=args.steps, progress=False)
            with torch.no_grad():
                nll = -model.eval().log_prob(test.x)
            row = {
                "set": shape, "family": family, "parameters": model.num_parameters(), "steps": summary["steps"],
                "selected_step": summary.get("best_step"), "train_seconds": summary["train_seconds"],
                "test_nll": round(float(nll.mean()), 4), "std_err": round(float(nll.std() / len(nll) ** 0.5), 4),
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }
            shutil.copy(run / "density.png", args.out / f"{family}_{shape}_density.png")
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "toy2d_flows.json").write_text(json.dumps(rows, indent=2))
    lines = [f"### RealNVP and Glow on toy2d, {args.steps} steps each: test NLL in nats/point (exact)", "",
             "| set | " + " | ".join(FAMILIES) + " |", "|---|" + "---|" * len(FAMILIES)]
    for shape in args.sets.split(","):
        cells = [next(f"{r['test_nll']:.3f} ± {r['std_err']:.3f}" for r in rows if r["set"] == shape and r["family"] == fam) for fam in FAMILIES]
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    (args.out / "toy2d_flows.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

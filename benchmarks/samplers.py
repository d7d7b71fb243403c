"""Diffusion samplers side by side on one trained digits model: FD_digits and samples/s.

Run (after training, e.g. by `genzoo bench` or scripts/demo.sh):
  .venv/bin/python benchmarks/samplers.py RUN_DIR --out benchmarks/results/samplers.json
Every sampler draws the same number of samples with the same seed; samples/s
are measured in this one run, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genzoo import api
from genzoo.eval.report import digits_sample_metrics

SETTINGS = [
    ("ddpm", 1000),
    ("ddim", 100),
    ("ddim", 20),
    ("dpmpp2m", 20),
    ("dpmpp2m", 10),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/samplers.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = api.load(args.run)
    rows = []
    for sampler, steps in SETTINGS:
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            x = torch.cat([model.sample(min(250, args.samples - i), generator=g, sampler=sampler, steps=steps) for i in range(0, args.samples, 250)])
        seconds = time.perf_counter() - t0
        m = digits_sample_metrics(x)
        row = {"sampler": sampler, "steps": steps, "fd_digits": round(m["fd_digits"], 2), "fd_digits_floor": round(m["fd_digits_floor"], 2),
               "precision": round(m["precision"], 3), "recall": round(m["recall"], 3), "samples_per_s": round(args.samples / seconds, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ref = next(r for r in rows if r["sampler"] == "ddpm")
    for r in rows:
        r["fd_vs_ddpm1000"] = round(r["fd_digits"] / ref["fd_digits"], 3)
        r["speed_vs_ddpm1000"] = round(r["samples_per_s"] / ref["samples_per_s"], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"run": str(args.run), "samples": args.samples, "rows": rows}, indent=2))
    print("| sampler | steps | FD_digits | vs DDPM-1000 | samples/s | speed-up |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['steps']} | {r['fd_digits']} | {r['fd_vs_ddpm1000']} | {r['samples_per_s']} | {r['speed_vs_ddpm1000']}x |")


if __name__ == "__main__":
    main()

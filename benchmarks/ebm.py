"""Energy-based models: PacGAN mode coverage on toy2d 8gaussians over seeds, and JEM on digits.

    # 8gaussians, the family's toy2d defaults, one run per seed (about 2 minutes each on one core)
    OMP_NUM_THREADS=1 python benchmarks/ebm.py toy --seeds 0 1 2
    # JEM on digits: test accuracy of its classifier and FD_digits of its samples, same CPU budget as the bench
    OMP_NUM_THREADS=1 python benchmarks/ebm.py jem --minutes 5

Writes JSON and PNGs under benchmarks/results/ (ebm_8gaussians*.{json,png}, ebm_jem_digits*.{json,png}).
The mode protocol (nearest mode, high quality within 3 standard deviations, a mode covered with at least
one such sample) is ``genzoo.eval.collapse.mode_coverage``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genzoo import api
from genzoo.core.atomic import write_atomic_file
from genzoo.data import load_dataset
from genzoo.eval.collapse import mode_coverage
from genzoo.eval.toy2d import mmd2
from genzoo.viz.ebm import save_energy_landscape
from genzoo.viz.samples import save_image_grid

RESULTS = Path(__file__).parent / "results"
TOY = "toy2d:8gaussians"
# Chains compared at sampling time: the training sampler's short run from noise, the default sample()
# (its long run, 100 steps) and a 5x longer run.
TOY_SAMPLERS = {"short_run_20": {"steps": 20}, "default_100": {}, "long_run_500": {"steps": 500}}
DIGITS_SAMPLERS = {"short_run_20": {"steps": 20}, "default_100": {}, "long_run_300": {"steps": 300}}


def toy(seeds: list[int], steps: int | None, n: int, runs: Path) -> dict:
    test = load_dataset(TOY, "test").x[:2000]
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        model, summary = api.train("ebm", TOY, seed=seed, steps=steps, out=runs / f"ebm-8gaussians-seed{seed}",
                                   progress=False)
        row = {"seed": seed, "train_steps": summary["steps"], "train_seconds": summary["train_seconds"]}
        for name, options in TOY_SAMPLERS.items():
            x = model.sample(n, generator=torch.Generator().manual_seed(seed), **options)
            cov = mode_coverage(x)
            row[name] = {"modes_covered": cov["modes_covered"], "high_quality_share": round(cov["high_quality_share"], 4),
                         "per_mode": cov["high_quality_per_mode"], "mmd2": round(mmd2(x, test), 5)}
        save_energy_landscape(model, load_dataset(TOY, "train"), RESULTS / f"ebm_8gaussians_seed{seed}.png", seed=seed)
        row["wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    real = mode_coverage(test)
    out = {"data": TOY, "n_samples": n, "protocol": "PacGAN (Lin et al. 2018): nearest mode, within 3 std",
           "real_test_points": {"modes_covered": real["modes_covered"], "high_quality_share": round(real["high_quality_share"], 4)},
           "runs": rows}
    write_atomic_file(RESULTS / "ebm_8gaussians.json", json.dumps(out, indent=2))
    return out


def jem(minutes: float | None, steps: int | None, n: int, runs: Path) -> dict:
    from genzoo.eval import evaluate

    t0 = time.perf_counter()
    model, summary = api.train("ebm", "digits", variant="jem", minutes=minutes, steps=steps,
                               out=runs / "ebm-jem-digits", progress=False)
    test = load_dataset("digits", "test")
    accuracy = (model.classify(test.x).argmax(1) == test.y).float().mean().item()
    out = {"variant": "jem", "train_steps": summary["steps"], "train_seconds": summary["train_seconds"],
           "test_accuracy": round(accuracy, 4), "samplers": {}}
    keep = ("fd_digits", "fd_digits_floor", "precision", "recall", "density", "coverage", "class_coverage", "class_kl",
            "nn_below_heldout_p5", "c_t", "samples_per_s")
    for name, options in DIGITS_SAMPLERS.items():
        metrics = evaluate(model, "digits", n_samples=n, sampler_options=options, seed=0, progress=False)
        out["samplers"][name] = {k: metrics[k] for k in metrics if k.startswith(keep)}
        print(name, json.dumps(out["samplers"][name]), flush=True)
    g = torch.Generator().manual_seed(0)
    save_image_grid(model.sample(100, generator=g), RESULTS / "ebm_jem_digits_samples.png", 17, nrow=10)
    labels = torch.arange(10).repeat_interleave(10)
    save_image_grid(model.sample(100, condition=labels, generator=g), RESULTS / "ebm_jem_digits_by_class.png", 17, nrow=10)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_atomic_file(RESULTS / "ebm_jem_digits.json", json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "samplers"}), flush=True)
    return out


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p_toy = sub.add_parser("toy")
    p_toy.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_toy.add_argument("--steps", type=int, default=None, help="default: the family's (3000)")
    p_toy.add_argument("--n", type=int, default=2000)
    p_jem = sub.add_parser("jem")
    p_jem.add_argument("--minutes", type=float, default=5.0)
    p_jem.add_argument("--steps", type=int, default=None)
    p_jem.add_argument("--n", type=int, default=1000)
    for p in (p_toy, p_jem):
        p.add_argument("--runs", type=Path, default=Path("runs/bench_ebm"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.what == "toy":
        toy(args.seeds, args.steps, args.n, args.runs)
    else:
        jem(None if args.steps else args.minutes, args.steps, args.n, args.runs)


if __name__ == "__main__":
    main()

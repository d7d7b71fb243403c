"""Mode coverage on toy2d 8gaussians with the PacGAN protocol (Lin et al. 2018), over several seeds.

Each GAN variant is trained with its defaults for ``--steps`` steps per seed; the EMA generator
draws ``--samples`` points (2,500, as in PacGAN), each assigned to its nearest of the 8 modes;
high quality within 3 standard deviations; a mode is covered with at least one such sample
(``genzoo.eval.collapse.mode_coverage``). Paper anchors: plain GAN 6.3 modes / 98.2%,
PacGAN2 7.9 / 95.6%. Goal: 8 modes and >= 95% high quality in every seed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gan_modes.py --variants dcgan,wgan-gp --seeds 0,1,2 \
        --out benchmarks/results/gan_modes

writes ``gan_modes.json`` (every run and the means) and ``gan_modes.png`` (the samples of every run
over the mode circles), atomically, after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default="dcgan,wgan-gp")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the family's default)")
    p.add_argument("--samples", type=int, default=2500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], help="VARIANT.KEY=VALUE config override")
    p.add_argument("--train", nargs="*", default=[], help="KEY=VALUE training overrides (e.g. schedule=cosine batch_size=512)")
    p.add_argument("--out", default="benchmarks/results/gan_modes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from genzoo import api
    from genzoo.data import load_dataset
    from genzoo.eval.collapse import eight_gaussians_alarm, mode_coverage
    from genzoo.eval.toy2d import mmd2
    from genzoo.train import Trainer

    train = load_dataset("toy2d:8gaussians", "train")
    test = load_dataset("toy2d:8gaussians", "test").x
    overrides: dict[str, dict] = {}
    for item in args.set:
        variant, _, assignment = item.partition(".")
        overrides.setdefault(variant, {}).update(api.parse_assignments([assignment]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs, samples = [], {}
    real = mode_coverage(test[: args.samples])
    for variant in args.variants.split(","):
        for seed in map(int, args.seeds.split(",")):
            model = api.build_model("gan", train, variant, overrides.get(variant), seed)
            train_settings = api.parse_assignments(args.train)
            cfg = api.train_config_for(type(model), train, steps=args.steps, seed=seed, progress=False, **train_settings)
            t0 = time.perf_counter()
            trainer = Trainer(model, train, cfg)
            trainer.fit()
            seconds = time.perf_counter() - t0
            gen = trainer.sampling_model.eval()
            x = gen.sample(args.samples, generator=torch.Generator().manual_seed(1000 + seed)).cpu()
            cov = mode_coverage(x)
            cov["spread_rms"] = _spread(x)  # real data: sqrt(2) x 0.2 = 0.28; smaller = modes narrower than the data
            # the raw (not averaged) generator beside the EMA one: averaging weights of a generator whose
            # modes still move could itself smear samples between modes
            raw = trainer.model.eval().sample(args.samples, generator=torch.Generator().manual_seed(1000 + seed)).cpu()
            raw_cov = mode_coverage(raw)
            runs.append({"variant": variant, "seed": seed, "steps": cfg.steps, "train_seconds": round(seconds, 1),
                         "model_overrides": overrides.get(variant, {}), "train_overrides": train_settings,
                         **cov, "mmd2": mmd2(x, test[:2000]),
                         "raw_generator": {"modes_covered": raw_cov["modes_covered"],
                                           "high_quality_share": raw_cov["high_quality_share"]},
                         "collapse_alarm": eight_gaussians_alarm(x, test[:2000])["alarm"]})
            samples[(variant, seed)] = x
            print(json.dumps(runs[-1]), flush=True)
            _write(out, runs, real, samples, args)


def _spread(x: torch.Tensor) -> float:
    """RMS distance of the high-quality samples to their nearest mode's centre."""
    from genzoo.eval.collapse import EIGHT_GAUSSIANS_CENTRES, EIGHT_GAUSSIANS_STD, nearest_mode

    _, dist = nearest_mode(x, EIGHT_GAUSSIANS_CENTRES)
    good = dist[dist < 3 * EIGHT_GAUSSIANS_STD]
    return round(float(good.square().mean().sqrt()), 4) if len(good) else float("nan")


def _summary(runs: list[dict]) -> dict:
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == variant]
        out[variant] = {
            "seeds": len(rs),
            "modes_covered_mean": sum(r["modes_covered"] for r in rs) / len(rs),
            "high_quality_mean": sum(r["high_quality_share"] for r in rs) / len(rs),
            "goal_met_every_seed": all(r["modes_covered"] == 8 and r["high_quality_share"] >= 0.95 for r in rs),
        }
    return out


def _write(out: Path, runs, real, samples, args) -> None:
    from genzoo.core.atomic import write_atomic_file
    from genzoo.eval.collapse import EIGHT_GAUSSIANS_CENTRES, EIGHT_GAUSSIANS_STD
    from genzoo.viz.samples import _matplotlib

    record = {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gan_modes.py " + " ".join(
                  f"--{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items() if v not in (None, [])),
              "load_average_at_end": os.getloadavg(),
              "threads": args.threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "real_test_points": real, "summary": _summary(runs), "runs": runs,
              "anchors_lin_2018": {"gan": [6.3, 0.982], "pacgan2": [7.9, 0.956]}}
    write_atomic_file(out.with_suffix(".json"), json.dumps(record, indent=2))

    plt = _matplotlib()
    keys = list(samples)
    fig, axes = plt.subplots(1, len(keys), figsize=(3 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        x = samples[key].numpy()
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        for c in EIGHT_GAUSSIANS_CENTRES:
            ax.add_patch(plt.Circle(c.tolist(), 3 * EIGHT_GAUSSIANS_STD, fill=False, color="red", lw=0.8))
        r = next(r for r in runs if (r["variant"], r["seed"]) == key)
        ax.set_title(f"{key[0]} seed {key[1]}\n{r['modes_covered']}/8 modes, {100 * r['high_quality_share']:.1f}% HQ", fontsize=9)
        ax.set_xlim(-4.5, 4.5)
        ax.set_ylim(-4.5, 4.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, out.with_suffix(".png"))


if __name__ == "__main__":
    main()

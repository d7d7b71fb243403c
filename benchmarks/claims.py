"""The seed guide's claims, measured at CPU scale (benchmarks/claims.md).

    .venv/bin/python benchmarks/claims.py datasize --steps 300 --seeds 0 1   # (a) GAN vs VAE on 100/300/1000 digits
    .venv/bin/python benchmarks/claims.py datasize --minutes 1 --seeds 0 1 --tag _minutes   # (a) at equal minutes
    .venv/bin/python benchmarks/claims.py params --target 150000 --minutes 2  # (b) FD at equal parameters and minutes
    .venv/bin/python benchmarks/claims.py speed                              # (c) samples/s as the sequence grows
    .venv/bin/python benchmarks/claims.py purpose                            # (e) which family takes which data kind
    .venv/bin/python benchmarks/claims.py render                             # the tables of claims.md

Results go to benchmarks/results/claims_<part>.json. Claims (b) and (d) cite the existing bench
(results/bench_digits_5min_v2.json and friends) instead of re-running it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def datasize(steps: int | None, seeds: list[int], sizes: list[int], families: list[str], n_samples: int, tag: str = "",
             minutes: float | None = None) -> None:
    from genzoo import api
    from genzoo.data import load_dataset
    from genzoo.eval import evaluate
    from genzoo.train import Trainer

    full = load_dataset("digits", "train")
    val = load_dataset("digits", "val")
    rows = []
    out = RESULTS / f"claims_datasize{tag}.json"
    for seed in seeds:  # seed outermost: a cut-short run still has every cell
        for family in families:
            for size in sizes:
                g = torch.Generator().manual_seed(1000 + seed)
                idx = torch.randperm(len(full.x), generator=g)[:size]
                sub = dataclasses.replace(full, x=full.x[idx], y=None if full.y is None else full.y[idx])
                model = api.build_model(family, sub, None, None, seed)
                config = api.train_config_for(type(model), sub, steps=steps, minutes=minutes, seed=seed, progress=False,
                                              batch_size=64)  # one batch size for all: 100 examples fit it
                t0 = time.perf_counter()
                trainer = Trainer(model, sub, config, out_dir=None, data_name="digits", val_data=val)
                trainer.fit()
                m = evaluate(trainer.selected_model, "digits", n_samples=n_samples, nll=False, seed=seed)
                row = {"family": family, "train_size": size, "seed": seed, "steps": trainer.step, "minutes": minutes,
                       "seconds": round(time.perf_counter() - t0, 1),
                       **{k: m.get(k) for k in ("fd_digits", "fd_digits_floor", "precision", "recall", "coverage",
                                                "copy_nn_below_p5_share", "copy_nn_below_p5_share_floor", "copy_ct", "parameters")}}
                print(json.dumps(row), flush=True)
                rows.append(row)
                out.write_text(json.dumps({"steps": steps, "minutes": minutes, "n_samples": n_samples, "rows": rows}, indent=1))


# (b) at equal parameters: each family's width knobs scaled by one factor until its parameter count
# is within 5% of the target; widths rounded to multiples of 8 (GroupNorm's groups divide them).
WIDTHS = {"diffusion": ("channels",), "vae": ("conv_widths", "hidden_widths"), "ebm": ("conv_widths", "hidden_widths"),
          "gan": ("feature_dim", "mlp_width"), "pixelcnn": ("channels", "head_channels"),
          "gated-pixelcnn": ("channels", "head_channels"), "glow": ("hidden",), "realnvp": ("hidden",), "stylegan": ("channels",)}


def _scaled(config: dict, keys: tuple[str, ...], factor: float) -> dict:
    def one(v):
        return max(8, int(round(v * factor / 8)) * 8)
    return {k: [one(v) for v in config[k]] if isinstance(config[k], (list, tuple)) else one(config[k]) for k in keys}


def at_params(family: str, data, target: int, seed: int = 0) -> tuple[dict, int]:
    """Overrides that bring ``family`` to ``target`` parameters (bisection on the width factor)."""
    from genzoo import api

    base = api.build_model(family, data, None, None, seed).config.to_dict()
    lo, hi, best = 0.05, 8.0, None
    for _ in range(30):
        mid = (lo * hi) ** 0.5
        over = _scaled(base, WIDTHS[family], mid)
        n = api.build_model(family, data, None, over, seed).num_parameters()
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (over, n)
        if abs(n - target) <= 0.05 * target:
            break
        lo, hi = (mid, hi) if n < target else (lo, mid)
    return best


def params(target: int, minutes: float, seeds: list[int], families: list[str], n_samples: int, tag: str = "") -> None:
    from genzoo import api
    from genzoo.data import load_dataset
    from genzoo.eval import evaluate
    from genzoo.train import Trainer

    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    out = RESULTS / f"claims_params{tag}.json"
    rows = []
    for seed in seeds:
        for family in families:
            over, n = at_params(family, train, target, seed)
            model = api.build_model(family, train, None, over, seed)
            config = api.train_config_for(type(model), train, minutes=minutes, seed=seed, progress=False)
            t0 = time.perf_counter()
            trainer = Trainer(model, train, config, out_dir=None, data_name="digits", val_data=val)
            trainer.fit()
            m = evaluate(trainer.selected_model, "digits", n_samples=n_samples, nll=False, seed=seed)
            row = {"family": family, "seed": seed, "parameters": n, "overrides": over, "minutes": minutes, "steps": trainer.step,
                   "seconds": round(time.perf_counter() - t0, 1),
                   **{k: m.get(k) for k in ("fd_digits", "fd_digits_floor", "precision", "recall", "coverage",
                                            "copy_nn_below_p5_share", "copy_nn_below_p5_share_floor", "copy_ct")}}
            print(json.dumps(row), flush=True)
            rows.append(row)
            out.write_text(json.dumps({"target": target, "minutes": minutes, "n_samples": n_samples, "rows": rows}, indent=1))


def render_params(path: Path) -> str:
    d = json.loads(path.read_text())
    rows = d["rows"]
    lines = [f"| family | params | runs (seeds) | steps (mean) | FD_digits mean ± std (min–max) | FD / floor | precision | recall | NN<p5 (floor {rows[0]['copy_nn_below_p5_share_floor']:.3f}) |",
             "|---|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in rows:
        by.setdefault(r["family"], []).append(r)
    for fam, cell in sorted(by.items(), key=lambda kv: statistics.fmean(r["fd_digits"] for r in kv[1])):
        fd = [r["fd_digits"] for r in cell]
        floor = cell[0]["fd_digits_floor"]
        lines.append(f"| {fam} | {cell[0]['parameters']:,} | {len(cell)} ({','.join(str(r['seed']) for r in cell)}) | "
                     f"{statistics.fmean(r['steps'] for r in cell):,.0f} | "
                     f"{statistics.fmean(fd):.1f} ± {statistics.stdev(fd) if len(fd) > 1 else 0:.1f} ({min(fd):.1f}–{max(fd):.1f}) | "
                     f"{statistics.fmean(fd) / floor:.1f}x | {statistics.fmean(r['precision'] for r in cell):.3f} | "
                     f"{statistics.fmean(r['recall'] for r in cell):.3f} | {statistics.fmean(r['copy_nn_below_p5_share'] for r in cell):.3f} |")
    return "\n".join(lines) + f"\n\n(target {d['target']:,} parameters; reached {min(r['parameters'] for r in rows) / d['target'] - 1:+.0%} to {max(r['parameters'] for r in rows) / d['target'] - 1:+.0%}, widths being multiples of 8; {d['minutes']} min each; {d['n_samples']} samples; floor FD {rows[0]['fd_digits_floor']:.1f})"


def speed(reps: int, sides: list[int], n: int, gpt: bool, tag: str = "") -> None:
    """Untrained models (speed does not depend on the weights): samples/s of image families as the
    image side grows, and of GPT as the generated length grows."""
    from genzoo import api
    from genzoo.data import Dataset, load_dataset

    rows = []
    out = RESULTS / f"claims_speed{tag}.json"
    for side in sides:
        ds = Dataset(name=f"rand{side}", split="train", x=torch.randint(0, 17, (64, 1, side, side)).float(), levels=17, kind="image")
        for family, opts in (("pixelcnn", {}), ("gated-pixelcnn", {}), ("vae", {}), ("realnvp", {}), ("glow", {}),
                             ("diffusion", {"steps": 20}), ("diffusion", {"steps": 100}), ("gan", {})):
            try:
                model = api.build_model(family, ds, None, None, 0).eval()
            except Exception as e:  # noqa: BLE001
                rows.append({"family": family, "side": side, "error": str(e)[:200]})
                continue
            times = []
            with torch.no_grad():
                for r in range(reps):
                    t0 = time.perf_counter()
                    model.sample(n, generator=torch.Generator().manual_seed(r), **opts)
                    times.append(time.perf_counter() - t0)
            label = family + (f"[steps={opts['steps']}]" if opts else "")
            row = {"family": label, "kind": "image", "length": side * side, "side": side, "n": n,
                   "samples_per_s": [n / t for t in times], "params": sum(p.numel() for p in model.parameters())}
            print(json.dumps(row), flush=True)
            rows.append(row)
            out.write_text(json.dumps(rows, indent=1))
    if not gpt:
        return
    text = load_dataset("pydocs", "train")
    model = api.build_model("gpt", text, None, None, 0).eval()
    for length in (32, 128, 512):
        times = []
        n = 8
        with torch.no_grad():
            for r in range(reps):
                t0 = time.perf_counter()
                model.sample(n, generator=torch.Generator().manual_seed(r), max_tokens=length)  # noqa
                times.append(time.perf_counter() - t0)
        row = {"family": "gpt", "kind": "tokens", "length": length, "n": n, "samples_per_s": [n / t for t in times],
               "tokens_per_s": [n * length / t for t in times], "params": sum(p.numel() for p in model.parameters())}
        print(json.dumps(row), flush=True)
        rows.append(row)
        out.write_text(json.dumps(rows, indent=1))


def purpose() -> None:
    from genzoo.registry import families

    rows = {n: {"data": sorted(f.data_kinds), "capabilities": sorted(f.capabilities), "likelihood": f.likelihood}
            for n, f in sorted(families().items()) if not n.startswith("test-")}
    (RESULTS / "claims_purpose.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1))


def spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4g} ± {sd:.2g} (min {min(values):.4g}, max {max(values):.4g})"


def render_datasize(path: Path) -> str:
    d = json.loads(path.read_text())
    rows = d["rows"]
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"| family | train images | runs (seeds) | FD_digits mean ± std (min–max) | FD / floor | recall | NN<p5 (floor {rows[0]['copy_nn_below_p5_share_floor']:.3f}) | C_T |",
             "|---|---|---|---|---|---|---|---|"]
    for fam in sorted({r["family"] for r in rows}):
        for size in sorted({r["train_size"] for r in rows}):
            cell = [r for r in rows if r["family"] == fam and r["train_size"] == size]
            if not cell:
                continue
            fd = [r["fd_digits"] for r in cell]
            floor = cell[0]["fd_digits_floor"]
            lines.append(f"| {fam} | {size} | {len(cell)} ({','.join(str(r['seed']) for r in cell)}) | "
                         f"{statistics.fmean(fd):.1f} ± {statistics.stdev(fd) if len(fd) > 1 else 0:.1f} ({min(fd):.1f}–{max(fd):.1f}) | "
                         f"{statistics.fmean(fd) / floor:.1f}x | {statistics.fmean(r['recall'] for r in cell):.3f} | "
                         f"{statistics.fmean(r['copy_nn_below_p5_share'] for r in cell):.3f} | {statistics.fmean(r['copy_ct'] for r in cell):+.2f} |")
    budget = f"{d['minutes']} min each" if d.get("minutes") else f"{d['steps']} steps"
    steps = f", steps reached {min(r['steps'] for r in rows)}–{max(r['steps'] for r in rows)}" if d.get("minutes") else ""
    return "\n".join(lines) + f"\n\n(seeds {seeds}; {budget}, batch 64{steps}; {d['n_samples']} samples; floor FD {rows[0]['fd_digits_floor']:.1f})"


def render_speed(path: Path) -> str:
    rows = [r for r in json.loads(path.read_text()) if "error" not in r]
    lines = ["| family | kind | length (pixels / tokens) | samples/s, mean (min–max of reps) | params |", "|---|---|---|---|---|"]
    for r in rows:
        s = r["samples_per_s"]
        lines.append(f"| {r['family']} | {r['kind']} | {r['length']} | {statistics.fmean(s):.3g} ({min(s):.3g}–{max(s):.3g}) | {r['params']:,} |")
    return "\n".join(lines)


def render() -> None:
    for name, fn in (("claims_datasize_2000steps.json", render_datasize), ("claims_datasize_minutes.json", render_datasize),
                     ("claims_params.json", render_params), ("claims_speed.json", render_speed),
                     ("claims_speed_32.json", render_speed), ("claims_speed_gpt.json", render_speed)):
        p = RESULTS / name
        if p.is_file():
            print(f"### {name}\n\n{fn(p)}\n")
    if (RESULTS / "claims_datasize_2000steps.json").is_file():
        plot_datasize(RESULTS / "claims_datasize_2000steps.json", RESULTS / "claims_datasize.png")


def plot_datasize(path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads(path.read_text())["rows"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for fam in sorted({r["family"] for r in rows}):
        sizes = sorted({r["train_size"] for r in rows if r["family"] == fam})
        cells = [[r["fd_digits"] for r in rows if r["family"] == fam and r["train_size"] == s] for s in sizes]
        ax.errorbar(sizes, [statistics.fmean(c) for c in cells], yerr=[statistics.stdev(c) if len(c) > 1 else 0 for c in cells],
                    marker="o", capsize=3, label=fam)
    ax.axhline(rows[0]["fd_digits_floor"], ls="--", c="gray", label="real-data floor")
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("FD_digits (lower is better)")
    ax.set_title("equal steps (2000), mean ± std over seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="part", required=True)
    d = sub.add_parser("datasize")
    d.add_argument("--steps", type=int, default=None)
    d.add_argument("--minutes", type=float, default=None, help="equal minutes instead of equal steps")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    d.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    d.add_argument("--families", nargs="+", default=["gan", "vae"])
    d.add_argument("--n-samples", type=int, default=500)
    d.add_argument("--tag", default="")
    q = sub.add_parser("params")
    q.add_argument("--target", type=int, default=150_000)
    q.add_argument("--minutes", type=float, default=2.0)
    q.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    q.add_argument("--families", nargs="+", default=["diffusion", "gated-pixelcnn", "gan", "vae", "realnvp"])
    q.add_argument("--n-samples", type=int, default=500)
    q.add_argument("--tag", default="")
    s = sub.add_parser("speed")
    s.add_argument("--reps", type=int, default=2)
    s.add_argument("--sides", type=int, nargs="*", default=[8, 16])
    s.add_argument("--n", type=int, default=16, help="samples per timed call")
    s.add_argument("--no-gpt", action="store_true")
    s.add_argument("--tag", default="")
    sub.add_parser("purpose")
    sub.add_parser("render")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.part == "datasize":
        if (a.steps is None) == (a.minutes is None):
            p.error("datasize: give --steps N or --minutes M")
        datasize(a.steps, a.seeds, a.sizes, a.families, a.n_samples, a.tag, a.minutes)
    elif a.part == "params":
        params(a.target, a.minutes, a.seeds, a.families, a.n_samples, a.tag)
    elif a.part == "speed":
        speed(a.reps, a.sides, a.n, not a.no_gpt, a.tag)
    elif a.part == "render":
        render()
    else:
        purpose()

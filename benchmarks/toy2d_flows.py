"""RealNVP and Glow on every toy2d set: test NLL (nats/point) and the learned density beside the data.

    .venv/bin/python benchmarks/toy2d_flows.py --steps 5000 --out benchmarks/results/toy2d

Each run trains with the family's default points config and settings, except
the step count; the Trainer writes ``density.png`` into the run folder, and
this script puts them together into one overview, ``toy2d_densities.png``
(rows: sets; columns: data, then each family's density). The NLL is exact (continuous data),
on the 10,000 fixed test points, with the standard error over points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from genzoo import api
from genzoo.data import load_dataset
from genzoo.data.toy2d import GENERATORS
from genzoo.eval.toy2d import test_nll

FAMILIES = ("realnvp", "glow")


def overview(runs: Path, sets: list[str], path: Path, tile: int = 220) -> None:
    """One PNG: per set, the data panel and each family's density panel, cropped from the runs' density.png."""
    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", (tile * (1 + len(FAMILIES)), (tile + 18) * len(sets) + 18), "white")
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(("data", *FAMILIES)):
        draw.text((c * tile + tile // 2 - 20, 3), title, fill="black")
    for r, shape in enumerate(sets):
        y = 18 + r * (tile + 18)
        draw.text((4, y + 2), shape, fill="black")
        for c, family in enumerate(FAMILIES):
            img = Image.open(runs / f"{family}-{shape}" / "density.png").convert("RGB")
            w, h = img.size
            halves = [img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))]  # data | model density
            panels = ([halves[0]] if c == 0 else []) + [halves[1]]
            for k, panel in enumerate(panels):
                col = 0 if (c == 0 and k == 0) else 1 + c
                box = panel.crop((30, 62, panel.width - 30, panel.height - 10))  # the axes only, no titles
                sheet.paste(box.resize((tile, tile)), (col * tile, y + 14))
    sheet.quantize(colors=128).save(path, optimize=True)  # a palette keeps the PNG small


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
            nll = test_nll(model, test.x)
            row = {
                "set": shape, "family": family, "parameters": model.num_parameters(), "steps": summary["steps"],
                "selected_step": summary.get("best_step"), "train_seconds": summary["train_seconds"],
                "test_nll": round(nll["nll_nats_per_point"], 4), "std_err": round(nll["nll_std_err_nats"], 4),
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "toy2d_flows.json").write_text(json.dumps(rows, indent=2))
    overview(args.runs, args.sets.split(","), args.out / "toy2d_densities.png")
    lines = [f"### RealNVP and Glow on toy2d, {args.steps} steps each: test NLL in nats/point (exact)", "",
             "| set | " + " | ".join(FAMILIES) + " |", "|---|" + "---|" * len(FAMILIES)]
    for shape in args.sets.split(","):
        cells = [next(f"{r['test_nll']:.3f} ± {r['std_err']:.3f}" for r in rows if r["set"] == shape and r["family"] == fam) for fam in FAMILIES]
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    (args.out / "toy2d_flows.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Merge several `genzoo bench` output folders (and lone `genzoo eval` runs) into one report.

Used when the families of one bench were run as parallel processes:
  .venv/bin/python benchmarks/merge_bench.py --out benchmarks/results/bench_digits_5min \
      bench_runs/digits-5min-b bench_runs/digits-5min-c bench_runs/digits-5min/diffusion-digits

Runs made before the bench had a "selected at" column get it here from their
``best/selection.json``, with a sample grid of those selected weights (what the
Trainer now writes itself at the end of a run).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from genzoo.bench.report import write_reports
from genzoo.bench.runner import _last_png


def rows_from(path: Path) -> tuple[list[dict], dict]:
    if (path / "results.json").is_file():
        res = json.loads((path / "results.json").read_text())
        return res["rows"], res["budget"]
    row = json.loads((path / "eval.json").read_text())  # a single run evaluated by `genzoo eval`
    row.setdefault("train_steps", row.pop("trained_steps", None))
    row["samples_png"] = _last_png(path)
    return [row], {}


def fill_selection(row: dict) -> dict:
    run = Path(row.get("run", ""))
    sel = run / "best" / "selection.json"
    if not sel.is_file() or row.get("selected_step") is not None:
        return row
    row["selected_step"] = json.loads(sel.read_text())["step"]
    grid = run / "samples" / f"best_step_{row['selected_step']:06d}.png"
    if not grid.is_file():
        import torch

        from genzoo import api
        from genzoo.viz.samples import save_samples

        model = api.load(run)
        with torch.no_grad():
            x = model.sample(64, generator=torch.Generator().manual_seed(0))
        save_samples(x, grid, model.data_spec)
    row["samples_png"] = str(grid)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", type=Path)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--out", type=Path, required=True, help="prefix: writes PREFIX.md, PREFIX.json, PREFIX.html")
    args = ap.parse_args()
    rows, budget = [], {}
    for src in args.sources:
        r, b = rows_from(src)
        rows += [fill_selection(row) for row in r]
        budget = budget or b
    rows.sort(key=lambda r: r["family"])
    tmp = args.out.parent / (args.out.name + "_tmp")
    write_reports(rows, args.data, tmp, budget)
    for name, ext in (("results.md", ".md"), ("results.json", ".json"), ("report.html", ".html")):
        shutil.move(tmp / name, args.out.with_suffix(ext))
    tmp.rmdir()
    print((args.out.with_suffix(".md")).read_text())


if __name__ == "__main__":
    main()

"""Memorization metrics on digits for generators with known answers.

A "generator" that replays training images must be flagged as copying, the
held-out validation images (real, never trained on) must not be, and uniform
random levels must read as underfitting. The number of k-means cells for C_T
is swept to show the choice of the default (5).

Run: .venv/bin/python benchmarks/memorization_known_answers.py --out benchmarks/results/memorization_known_answers.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from genzoo.data import load_dataset
from genzoo.eval.memorization import memorization_metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/memorization_known_answers.json"))
    args = ap.parse_args()
    train, val, test = (load_dataset("digits", s).x for s in ("train", "val", "test"))
    g = torch.Generator().manual_seed(0)
    generators = {
        "replayed training images (1000)": train,
        "half replayed, half uniform (1000)": torch.cat([train[:500], torch.randint(17, (500, 1, 8, 8), generator=g).float()]),
        "validation images, real (350)": val,
        "uniform random levels (1000)": torch.randint(17, (1000, 1, 8, 8), generator=g).float(),
    }
    rows = {}
    for name, samples in generators.items():
        row = {}
        for cells in (1, 3, 5, 10, 20):
            m = memorization_metrics(samples, train, test, cells=cells)
            row[f"C_T_{cells}_cells"] = round(m["copy_ct"], 2)
            row[f"C_T_{cells}_cells_kept"] = m["copy_ct_cells"]
        row.update(exact_copy_share=m["copy_exact_share"], nn_below_p5_share=round(m["copy_nn_below_p5_share"], 3))
        rows[name] = row
        print(name, json.dumps(row))
    args.out.write_text(json.dumps({"data": "digits", "heldout": "test split (447)", "train": "train split (1000)", "results": rows}, indent=2))


if __name__ == "__main__":
    main()

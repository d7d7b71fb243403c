"""ViT digits classifier: test accuracy after a fixed number of epochs, with its training time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vit_digits.py --name vit_digits_e300_strongaug

Writes benchmarks/results/NAME.json and NAME.png (validation accuracy per epoch).
One thread: the model is small and the machine is shared (see genzoo.eval.evaluator.one_thread).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from genzoo.core.atomic import write_atomic_file
from genzoo.data import load_dataset
from genzoo.models.vit_classifier import ViTClassifier, ViTClassifierConfig

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ViTClassifierConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--depth", type=int, default=defaults.depth)
    parser.add_argument("--patch", type=int, default=defaults.patch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--max-shift", type=float, default=defaults.max_shift)
    parser.add_argument("--max-rotation-deg", type=float, default=defaults.max_rotation_deg)
    parser.add_argument("--max-scale", type=float, default=defaults.max_scale)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--name", default="vit_digits", help="output file stem under benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train, val, test = (load_dataset("digits", s) for s in ("train", "val", "test"))
    cfg = ViTClassifierConfig(epochs=args.epochs, width=args.width, depth=args.depth, patch=args.patch, lr=args.lr,
                              dropout=args.dropout, seed=args.seed, augment=not args.no_augment, max_shift=args.max_shift,
                              max_rotation_deg=args.max_rotation_deg, max_scale=args.max_scale)
    clf = ViTClassifier(cfg)
    start = time.perf_counter()
    clf.fit(train.x, train.y, x_val=val.x, y_val=val.y)
    seconds = time.perf_counter() - start  # includes the per-epoch validation pass
    result = {
        **clf.describe(),
        "train_seconds": round(seconds, 1),
        "train_accuracy": clf.score(train.x, train.y),
        "val_accuracy": clf.score(val.x, val.y),
        "test_accuracy": clf.score(test.x, test.y),
        "test_size": len(test.y),
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "history": clf.history,
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vit_digits.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("no_augment", "name")) + f" --name {args.name}",
    }
    RESULTS.mkdir(exist_ok=True)
    write_atomic_file(RESULTS / f"{args.name}.json", json.dumps(result, indent=1).encode())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([h["epoch"] for h in clf.history], [h["val_accuracy"] for h in clf.history])
    ax.axhline(0.97, color="grey", ls="--", lw=0.8, label="goal 0.97")
    ax.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0.5, 1.0),
           title=f"ViT {cfg.depth}x{cfg.width}, patch {cfg.patch}: test {result['test_accuracy']:.3f}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = RESULTS / f".{args.name}.png.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, RESULTS / f"{args.name}.png")
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()

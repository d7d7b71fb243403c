"""ViT digits classifier (the vit family, trained by the Trainer): test accuracy with its training time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vit_digits.py --name vit_digits_trainer

The defaults are the family's recipe (``ViT.default_train``: 4,800 steps = the measured 300 epochs,
lr 2e-3, warm-up + cosine). Reports the accuracy of the weights the run selects (lowest validation
loss, what `genzoo eval` and `vit eval` use) and of the last weights. Writes
benchmarks/results/NAME.json and NAME.png (training and validation loss).
One thread: the model is small and the machine is shared (see genzoo.eval.evaluator.one_thread).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from genzoo import api
from genzoo.core.atomic import write_atomic_file
from genzoo.data import load_dataset
from genzoo.models.vit import ViT, ViTConfig
from genzoo.train import Trainer

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_defaults, train_defaults = ViTConfig(), ViT.default_train({})
    parser.add_argument("--steps", type=int, default=train_defaults["steps"])
    parser.add_argument("--lr", type=float, default=train_defaults["lr"])
    parser.add_argument("--val-every", type=int, default=250)
    for name in ("width", "depth", "patch"):
        parser.add_argument(f"--{name}", type=int, default=getattr(model_defaults, name))
    for name in ("dropout", "max_shift", "max_rotation_deg", "max_scale"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(model_defaults, name))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--name", default="vit_digits", help="output file stem under benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train, val, test = (load_dataset("digits", s) for s in ("train", "val", "test"))
    overrides = {"width": args.width, "depth": args.depth, "patch": args.patch, "dropout": args.dropout, "augment": not args.no_augment,
                 "max_shift": args.max_shift, "max_rotation_deg": args.max_rotation_deg, "max_scale": args.max_scale}
    model = api.build_model("vit", train, overrides=overrides, seed=args.seed)
    settings = api.train_config_for(ViT, train, steps=args.steps, lr=args.lr, seed=args.seed, val_every=args.val_every,
                                    device=args.device, progress=False)
    trainer = Trainer(model, train, settings, val_data=val)
    start = time.perf_counter()
    summary = trainer.fit()
    seconds = time.perf_counter() - start  # includes the validation passes
    selected, last = trainer.selected_model, trainer.sampling_model

    def accuracies(m) -> dict:
        return {f"{split}_accuracy": m.accuracy(d.x, d.y) for split, d in (("train", train), ("val", val), ("test", test))}

    result = {
        "config": model.config.to_dict(), "train_config": settings.to_dict(), "parameters": model.num_parameters(),
        "train_seconds": round(seconds, 1), "best_step": summary.get("best_step"), "best_val_loss": summary.get("best_val_loss"),
        "selected": accuracies(selected), "last": accuracies(last), "test_size": len(test.y),
        "threads": torch.get_num_threads(), "device": str(trainer.device), "load_average_1min": os.getloadavg()[0],
        "history": trainer.history, "torch": torch.__version__,
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vit_digits.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("no_augment", "name")) + f" --name {args.name}",
    }
    RESULTS.mkdir(exist_ok=True)
    write_atomic_file(RESULTS / f"{args.name}.json", json.dumps(result, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for event, label in (("train", "train loss (augmented)"), ("val", "validation loss")):
        rows = [h for h in trainer.history if h.get("event") == event]
        ax.plot([h["step"] for h in rows], [h["loss" if event == "train" else "val_loss"] for h in rows], label=label)
    ax.set(xlabel="step", ylabel="cross-entropy", yscale="log",
           title=f"ViT {args.depth}x{args.width}, patch {args.patch}: test {result['selected']['test_accuracy']:.3f} (selected)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    tmp = RESULTS / f".{args.name}.png.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, RESULTS / f"{args.name}.png")
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()

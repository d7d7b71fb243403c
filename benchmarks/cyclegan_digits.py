"""CycleGAN handwritten digits (A) <-> typed digits (B): is the translated digit still the same digit?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cyclegan_digits.py --out runs/cyclegan-digits --steps 3000

Trains ``cyclegan`` on ``digits2typed`` (or resumes the run in --out), then
1. trains a reader for typed digits: the digits evaluator's network (``DigitsCNN``)
   trained on the typed-digits train split with the evaluator's augmentation,
   selected on the typed val split (seed 0); reports its accuracy on real typed test digits;
2. translates the 447 handwritten test digits to typed and reports the share the typed
   reader reads as the intended digit (and, as a baseline, its share on the untranslated
   handwritten digits), the digits evaluator's share on the same translations, and the
   reverse direction (typed test -> handwritten, read by the digits evaluator);
3. reports the cycle reconstruction error in levels (0..16) per pixel, both directions,
   beside the untrained model's;
4. writes before / translated / round-trip grids as PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genzoo.core.atomic import write_atomic_with
from genzoo import api
from genzoo.data import load_dataset
from genzoo.data.domains import domain_images
from genzoo.eval.evaluator import DEFAULT_SETTINGS, DigitsCNN, get_digits_evaluator, levels_to_input, random_affine
from genzoo.tasks.translate import save_translation_grid


def typed_reader(seed: int = 0, epochs: int = 30):
    """The typed reader, trained once and cached beside the digits evaluator (``$GENZOO_CACHE``)."""
    from genzoo.eval.evaluator import cache_dir

    path = cache_dir() / f"typed_reader_seed{seed}_epochs{epochs}.pt"
    s = DEFAULT_SETTINGS
    if path.is_file():
        net = DigitsCNN(s.feature_dim, s.dropout)
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    net = train_typed_reader(seed, epochs)
    write_atomic_with(path, lambda tmp: torch.save(net.state_dict(), tmp))
    return net


def train_typed_reader(seed: int = 0, epochs: int = 30):
    """DigitsCNN trained on typed digits (the evaluator's recipe, fewer epochs: 2000 images)."""
    s = DEFAULT_SETTINGS
    train, val = load_dataset("typed-digits", "train"), load_dataset("typed-digits", "val")
    x, xv = levels_to_input(train.x), levels_to_input(val.x)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    net = DigitsCNN(s.feature_dim, s.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    per_epoch = math.ceil(len(x) / s.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, s.lr, total_steps=epochs * per_epoch)
    best = (math.inf, None)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), s.batch_size):
            idx = order[i : i + s.batch_size]
            loss = F.cross_entropy(net(random_affine(x[idx], s, g)), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            v = F.cross_entropy(net(xv), val.y).item()
        if v <= best[0]:
            best = (v, {k: t.clone() for k, t in net.state_dict().items()})
    net.load_state_dict(best[1])
    return net.eval()


@torch.no_grad()
def read(net, x_levels) -> torch.Tensor:
    return net(levels_to_input(x_levels)).argmax(1)


def share(pred, labels) -> float:
    return round(float((pred == labels).float().mean()), 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/cyclegan-digits")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--results", default="benchmarks/results/cyclegan_digits")
    ap.add_argument("--set", nargs="*", default=[], help="model config KEY=VALUE")
    ap.add_argument("--variant", default=None, help="default (unsupervised CycleGAN) or semantic (reads labels)")
    ap.add_argument("--train", nargs="*", default=[], help="training KEY=VALUE (e.g. schedule=cosine)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model, summary = api.train("cyclegan", "digits2typed", variant=args.variant, out=args.out, resume=True, steps=args.steps,
                               model_overrides=api.parse_assignments(args.set), progress=False,
                               **api.parse_assignments(args.train))
    model.eval()
    untrained = api.build_model("cyclegan", load_dataset("digits2typed", "train"), args.variant,
                                overrides=api.parse_assignments(args.set)).eval()

    test = load_dataset("digits2typed", "test")
    hand, hand_y = domain_images(test, "A")
    typed, typed_y = domain_images(test, "B")
    reader = typed_reader()
    evaluator = get_digits_evaluator()
    to_typed, to_hand = model.translate(hand, "A"), model.translate(typed, "B")
    report = {
        "run": args.out, "steps": summary["steps"], "train_seconds": summary["train_seconds"],
        "variant": model.config.variant, "model_overrides": args.set, "train_overrides": args.train, "load_average_at_end": os.getloadavg(),
        "typed_reader": {"test_accuracy_on_real_typed": share(read(reader, typed), typed_y),
                         "on_untranslated_handwritten": share(read(reader, hand), hand_y)},
        "digits_evaluator": {"test_accuracy_on_real_handwritten": round(evaluator.test_accuracy, 4),
                             "on_untranslated_typed": share(evaluator.predict(typed), typed_y)},
        "hand_to_typed": {"images": len(hand), "typed_reader_reads_intended": share(read(reader, to_typed), hand_y),
                          "digits_evaluator_reads_intended": share(evaluator.predict(to_typed), hand_y)},
        "typed_to_hand": {"images": len(typed), "digits_evaluator_reads_intended": share(evaluator.predict(to_hand), typed_y),
                          "typed_reader_reads_intended": share(read(reader, to_hand), typed_y)},
        "cycle_error_levels": {"A_to_B_to_A": round(float(model.cycle_error(hand, "A").mean()), 4),
                               "B_to_A_to_B": round(float(model.cycle_error(typed, "B").mean()), 4),
                               "untrained_A_to_B_to_A": round(float(untrained.cycle_error(hand, "A").mean()), 4),
                               "untrained_B_to_A_to_B": round(float(untrained.cycle_error(typed, "B").mean()), 4)},
        "grids": [str(save_translation_grid(model, test, side, f"{results}_{side}.png", n=48)) for side in ("A", "B")],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    Path(f"{results}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

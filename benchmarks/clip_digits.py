"""Contrastive image-text model (the clip family, trained by the Trainer) on captioned digits: held-out retrieval.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clip_digits.py --name clip_digits          # the family's recipe
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clip_digits.py --steps 150 300 600 1200 2400 \
        --rotation-deg 0 --scale 0 --shift 0 --text-noise 0 --name clip_digits_sweep       # no regularisers

For each step budget: trains a CLIP on captioned-digits/train (seed 0, one thread; the weights with
the lowest validation loss are selected, as `genzoo train clip` does), then on the 447 test images:
text -> image R@1 / R@5 of the exact paired image and class-match@1, for the test captions
(training phrasings) and for the same images recaptioned in unseen phrasings; class-match@1 and
class precision@5 of ``captions.prompts(d)`` / ``prompts(d, unseen=True)``; zero-shot digit
accuracy; training seconds. ``--plain-loss`` trains with CLIP's single-positive targets instead
(the ablation of the multi-positive loss).

Writes benchmarks/results/NAME.json and NAME.png (for 10 prompts, the top-5 test images of the
last model trained).
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
from genzoo.data import captions, load_dataset
from genzoo.eval.clip_retrieval import format_retrieval, retrieval_metrics
from genzoo.models.clip import CLIP, CLIPConfig
from genzoo.train import Trainer

RESULTS = Path(__file__).parent / "results"
# one prompt per digit, alternating training and unseen phrasings
GRID_PROMPTS = [captions.prompts(d, unseen=d % 2 == 1)[d % 3] for d in range(10)]


def retrieval_grid(model: CLIP, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = load_dataset(captions.NAME, "test")
    sim = model.encode_texts(GRID_PROMPTS) @ model.encode_images(test.x).T
    top = sim.topk(5, dim=1).indices
    fig, axes = plt.subplots(10, 6, figsize=(7.5, 13), gridspec_kw={"width_ratios": [2.4, 1, 1, 1, 1, 1]})
    for r, prompt in enumerate(GRID_PROMPTS):
        axes[r, 0].text(0, 0.5, f"{prompt!r}", va="center", fontsize=9)
        axes[r, 0].axis("off")
        for c, i in enumerate(top[r].tolist()):
            ax = axes[r, c + 1]
            ax.imshow(test.x[i, 0].numpy(), cmap="gray_r", vmin=0, vmax=16)
            ax.set_xticks([]), ax.set_yticks([])
            ok = int(test.y[i]) == r
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if ok else "tab:red")
                spine.set_linewidth(2)
    fig.suptitle("CLIP text -> image, top 5 of 447 test digits (green: the asked digit)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d, t = CLIPConfig(), CLIP.default_train({})
    parser.add_argument("--steps", type=int, nargs="+", default=[t["steps"]])
    parser.add_argument("--batch-size", type=int, default=t["batch_size"])
    parser.add_argument("--lr", type=float, default=t["lr"])
    parser.add_argument("--embed-dim", type=int, default=d.embed_dim)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=float, default=d.shift, help="augmentation: shift in pixels")
    parser.add_argument("--rotation-deg", type=float, default=d.rotation_deg, help="augmentation: rotation")
    parser.add_argument("--scale", type=float, default=d.scale, help="augmentation: scaling by 1 +- this")
    parser.add_argument("--text-noise", type=float, default=d.text_noise, help="Gaussian noise on the sentence vectors (per dimension)")
    parser.add_argument("--plain-loss", action="store_true", help="CLIP's single-positive targets (ablation)")
    parser.add_argument("--name", default="clip_digits")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train, val = load_dataset(captions.NAME, "train"), load_dataset(captions.NAME, "val")
    overrides = {"embed_dim": args.embed_dim, "multi_positive": not args.plain_loss, "shift": args.shift,
                 "rotation_deg": args.rotation_deg, "scale": args.scale, "text_noise": args.text_noise}
    runs, model = [], None
    for steps in args.steps:
        model = api.build_model("clip", train, overrides=overrides, seed=args.seed)
        settings = api.train_config_for(CLIP, train, steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                        device="cpu", progress=False)
        model.prepare_data(train)  # encode the captions outside the timed loop
        trainer = Trainer(model, train, settings, val_data=val)
        start, cpu = time.perf_counter(), time.process_time()
        summary = trainer.fit()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu  # CPU time: what a quiet machine would take
        model = trainer.selected_model
        final_loss = next((h["loss"] for h in reversed(trainer.history) if h.get("event") == "train"), None)
        metrics = retrieval_metrics(model, "test")
        runs.append({"config": model.config.to_dict(), "train_config": settings.to_dict(),
                     "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu, 1), "parameters": model.num_parameters(),
                     "final_loss": final_loss, "best_step": summary.get("best_step"),
                     "temperature": 1 / model.scale().item(), "test": metrics, "val": retrieval_metrics(model, "val"),
                     "test_last_weights": retrieval_metrics(trainer.sampling_model, "test")})
        print(f"--- {steps} steps, {seconds:.1f} s ({cpu:.1f} s CPU), loss {final_loss:.3f}, "
              f"selected step {summary.get('best_step')}")
        print(format_retrieval(metrics), flush=True)
    RESULTS.mkdir(exist_ok=True)
    write_atomic_file(RESULTS / f"{args.name}.json", json.dumps({"runs": runs, "torch": torch.__version__}, indent=2).encode())
    retrieval_grid(model, RESULTS / f"{args.name}.png")
    print(f"wrote {RESULTS / args.name}.json and .png")


if __name__ == "__main__":
    main()

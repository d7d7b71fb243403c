"""Contrastive image-text model (genzoo.models.clip) on captioned digits: held-out retrieval.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clip_digits.py --name clip_digits          # the defaults
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clip_digits.py --steps 150 300 600 1200 2400 \
        --rotation-deg 0 --scale 0 --text-noise 0 --name clip_digits_sweep                      # no regularisers

For each step budget: trains a CLIP on captioned-digits/train (seed 0, one thread), then on the
447 test images: text -> image R@1 / R@5 of the exact paired image and class-match@1, for the
test captions (training phrasings) and for the same images recaptioned in unseen phrasings;
class-match@1 and class precision@5 of ``captions.prompts(d)`` / ``prompts(d, unseen=True)``;
zero-shot digit accuracy; training seconds. ``--plain-loss`` trains with CLIP's single-positive
targets instead (the ablation of the multi-positive loss).

Writes benchmarks/results/NAME.json and NAME.png (for 10 prompts, the top-5 test images of the
last model trained).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from genzoo.core.atomic import write_atomic_file
from genzoo.data import captions, load_dataset
from genzoo.eval.clip_retrieval import format_retrieval, retrieval_metrics
from genzoo.models.clip import CLIP, CLIPConfig, CLIPTrainSettings, train_clip

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
    d = CLIPTrainSettings()
    parser.add_argument("--steps", type=int, nargs="+", default=[d.steps])
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--embed-dim", type=int, default=CLIPConfig().embed_dim)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--shift", type=int, default=d.shift, help="augmentation: shift in pixels")
    parser.add_argument("--rotation-deg", type=float, default=d.rotation_deg, help="augmentation: 0 (and --scale 0): whole-pixel shifts only")
    parser.add_argument("--scale", type=float, default=d.scale, help="augmentation: scaling by 1 +- this")
    parser.add_argument("--text-noise", type=float, default=d.text_noise, help="Gaussian noise on the sentence vectors (per dimension)")
    parser.add_argument("--plain-loss", action="store_true", help="CLIP's single-positive targets (ablation)")
    parser.add_argument("--name", default="clip_digits")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = load_dataset(captions.NAME, "train")
    runs, model = [], None
    for steps in args.steps:
        settings = CLIPTrainSettings(steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                     multi_positive=not args.plain_loss, shift=args.shift, rotation_deg=args.rotation_deg,
                                     scale=args.scale, text_noise=args.text_noise)
        torch.manual_seed(args.seed)
        model = CLIP(CLIPConfig(embed_dim=args.embed_dim))
        model.sentence_vectors(sorted(set(train.meta["captions"])))  # encode the captions outside the timed loop
        start, cpu = time.perf_counter(), time.process_time()
        history = train_clip(model, train.x, train.meta["captions"], train.meta["image_index"], settings)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu  # CPU time: what a quiet machine would take
        metrics = retrieval_metrics(model, "test")
        runs.append({"settings": asdict(settings), "config": asdict(model.config),
                     "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu, 1),
                     "parameters": sum(p.numel() for p in model.parameters()), "final_loss": history[-1]["loss"],
                     "temperature": history[-1]["temperature"], "test": metrics, "val": retrieval_metrics(model, "val")})
        print(f"--- {steps} steps, {seconds:.1f} s ({cpu:.1f} s CPU), loss {history[-1]['loss']:.3f}")
        print(format_retrieval(metrics), flush=True)
    RESULTS.mkdir(exist_ok=True)
    write_atomic_file(RESULTS / f"{args.name}.json", json.dumps({"runs": runs, "torch": torch.__version__}, indent=2).encode())
    retrieval_grid(model, RESULTS / f"{args.name}.png")
    print(f"wrote {RESULTS / args.name}.json and .png")


if __name__ == "__main__":
    main()

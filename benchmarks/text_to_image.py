"""Text-to-image on captioned digits: does the model draw what the prompt asks for?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_to_image.py RUN --name t2i_unet5k

For a text-conditioned diffusion run (``genzoo train diffusion --data captioned-digits``):

* prompt accuracy (the share of samples the digits evaluator reads as the asked digit) for a sweep
  of classifier-free guidance scales, on caption phrasings and on phrasings absent from training;
* whether adjectives steer the strokes: the measured thickness and width (the properties the
  captions were written from) of samples for "a thin X" vs "a thick X" and "a narrow X" vs "a wide X";
* the CLIP-style agreement score of the samples with their prompts, when a CLIP model is given
  (``--clip DIR``) or can be built (``genzoo.eval.prompt_agreement.default_clip``);
* FD_digits of the prompted samples at each scale (they are balanced over digits, like the test
  set, so FD measures how much guidance narrows them) and of unprompted samples.

Writes benchmarks/results/NAME.json and NAME.png (rows: one prompt per digit, without guidance
then with; then the adjective prompts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genzoo.core.atomic import write_atomic_file
from genzoo.runs.checkpoint import load_model
from genzoo.data import captions
from genzoo.eval.evaluator import get_digits_evaluator
from genzoo.eval.prompts import prompt_accuracy, prompt_list, prompt_samples
from genzoo.eval.report import digits_sample_metrics, draw_samples
from genzoo.viz.samples import save_image_grid

RESULTS = Path(__file__).parent / "results"
ADJECTIVE_PAIRS = (("thin", "thick", "thickness"), ("narrow", "wide", "width"))


def adjective_effect(model, guidance: float, per_digit: int, options: dict) -> dict:
    """Mean measured property of samples prompted with each adjective of a pair, over all digits."""
    out = {}
    for low, high, prop in ADJECTIVE_PAIRS:
        for adj in (low, high):
            prompts = [f"a {adj} {captions.WORDS[d]}" for d in range(10) for _ in range(per_digit)]
            x = prompt_samples(model, prompts, guidance=guidance, seed=1, options=options)
            out[f"{adj}_{prop}"] = float(captions._features(x[:, 0].numpy())[prop].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--name", default="text_to_image")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 5.0])
    parser.add_argument("--per-digit", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps")
    parser.add_argument("--clip", default=None, help="a CLIP model folder (default: genzoo's cached default_clip, if available)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = load_model(args.run, "cpu").eval()
    options = {"steps": args.steps}
    evaluator = get_digits_evaluator()
    result = {"run": str(args.run), "per_digit": args.per_digit, "sampler": "dpmpp2m", "steps": args.steps,
              "evaluator_test_accuracy": evaluator.test_accuracy, "seen": {}, "unseen": {}}
    for w in args.guidance:
        for key, unseen in (("seen", False), ("unseen", True)):
            r = prompt_accuracy(model, guidance=w, unseen=unseen, per_digit=args.per_digit, options=options, evaluator=evaluator)
            if key == "seen":  # diversity at this scale: FD of the prompted samples (balanced over digits) to the test set
                r["fd_digits"] = digits_sample_metrics(r["samples"])["fd_digits"]
            r = {k: v for k, v in r.items() if k not in ("samples", "prompts")}
            result[key][str(w)] = r
            fd = f"  FD_digits {r['fd_digits']:.1f}" if "fd_digits" in r else ""
            print(f"w={w:<4g} {key:<7} prompt accuracy {r['accuracy']:.3f}{fd}  per digit {[round(a, 2) for a in r['per_digit']]}", flush=True)
    best = max(args.guidance, key=lambda w: result["seen"][str(w)]["accuracy"])
    result["adjectives"] = {str(w): adjective_effect(model, w, 20, options) for w in (1.0, best)}
    print("adjectives:", json.dumps(result["adjectives"]), flush=True)

    samples, _ = draw_samples(model, 1000, (1, 8, 8), seed=0, batch_size=250, options=options)
    unprompted = digits_sample_metrics(samples)
    result["unprompted"] = {k: unprompted[k] for k in ("fd_digits", "fd_digits_floor", "class_coverage", "class_kl")}
    print("unprompted:", result["unprompted"], flush=True)

    try:
        from genzoo.eval.prompt_agreement import default_clip, prompt_agreement

        clip = args.clip or default_clip()
        for w in (1.0, best):
            prompts = [p for d in range(10) for p in prompt_list(d, args.per_digit)]
            x = prompt_samples(model, prompts, guidance=w, seed=0, options=options)
            result.setdefault("clip", {})[str(w)] = {k: v for k, v in prompt_agreement(clip, x, prompts).items()
                                                     if isinstance(v, (int, float))}
        print("clip agreement:", result["clip"], flush=True)
    except ImportError:
        result["clip"] = "genzoo.eval.prompt_agreement not available"

    # the picture: per digit, 8 samples of "a handwritten <digit>" at w=1, then at the best w; then adjectives
    rows = []
    for w in (1.0, best):
        prompts = [f"a handwritten {captions.WORDS[d]}" for d in range(10) for _ in range(8)]
        rows.append(prompt_samples(model, prompts, guidance=w, seed=2, options=options))
    for low, high, _ in ADJECTIVE_PAIRS:
        for adj in (low, high):
            prompts = [f"a {adj} {captions.WORDS[d]}" for d in range(10) for _ in range(8)]
            rows.append(prompt_samples(model, prompts, guidance=best, seed=3, options=options))
    # tiles: each block of 8 is one digit; lay out digits as rows of 8, one panel after another
    grid = torch.cat(rows)
    RESULTS.mkdir(exist_ok=True)
    save_image_grid(grid, RESULTS / f"{args.name}.png", levels=17, nrow=8 * 2)
    result["png_layout"] = (f"panels of 10 digits x 8 samples, two digits per row: 'a handwritten <digit>' at w=1, at w={best:g}; "
                            "then 'a thin', 'a thick', 'a narrow', 'a wide <digit>' at w=" + f"{best:g}")
    result["best_guidance"] = best
    result["seconds"] = time.perf_counter() - start
    write_atomic_file(RESULTS / f"{args.name}.json", json.dumps(result, indent=2))
    print(f"wrote {RESULTS / args.name}.json and .png ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()

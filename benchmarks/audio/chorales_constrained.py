"""Chorales: constrained (every voice in range) vs unconstrained sampling of one trained GPT, with the
music statistics of ``genzoo.eval.music`` beside their held-out floor, and the speed of each.

    OMP_NUM_THREADS=2 flock /tmp/s4/cpu.lock .venv/bin/python benchmarks/audio/chorales_constrained.py \
        runs/bq/chorales [--n 64] [--repeats 3]

Both sample sets use the same seed and the model's default length (256 tokens after the start
token, about 51 sixteenth-note steps). Timing: each set is drawn ``--repeats`` times, the two
interleaved (fresh ``torch.Generator`` each time, so the same tokens); best and median wall time and
best process CPU time reported; the constrained time includes building the llguidance matcher. The
constraint's own cost is also timed alone (replaying the constrained tokens through the matchers). Writes the first constrained sample as
``docs/audio/chorale-constrained.mid`` and ``.wav`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from genzoo import api
from genzoo.data import chorales
from genzoo.eval import music
from genzoo.viz.music import save_chorales


def draw(model, n: int, in_range: bool, seed: int):
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        x = chorales.sample(model, n, generator=torch.Generator().manual_seed(seed), in_range=in_range)
    return x, time.perf_counter() - t0, time.process_time() - c0


def mask_cost(rows, tok) -> float:
    """Seconds per token of the constraint alone: the llguidance work the sampler does for these rows
    (a matcher per row and per chorale, consume, the allowed mask), without the model."""
    from genzoo.sampling.constrained import Constraint

    t0 = time.perf_counter()
    c = Constraint(tok, regex=chorales.range_regex(), special_ids=tok.special_ids)
    for row in rows.tolist():
        m = c.matcher()
        for t in row:
            m.allowed(len(tok.token_bytes()))
            if t == tok.eos_id:
                m = c.matcher()
            else:
                m.consume([t])
    return (time.perf_counter() - t0) / rows.numel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/audio/chorale-constrained.mid")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model = api.load(args.run).eval()
    tok = model.tokenizer
    print("load before:", os.getloadavg())
    modes = (("unconstrained", False), ("constrained (--in-range)", True))
    rows, walls, cpus = {}, {name: [] for name, _ in modes}, {name: [] for name, _ in modes}
    with torch.no_grad():  # warm-up (first-call allocations, llguidance's tokenizer table), not timed
        for _, in_range in modes:
            chorales.sample(model, 2, generator=torch.Generator().manual_seed(0), in_range=in_range, max_tokens=32)
    for _ in range(args.repeats):  # interleaved, so that load from outside falls on both alike
        for name, in_range in modes:
            x, wall, cpu = draw(model, args.n, in_range, args.seed)
            assert name not in rows or torch.equal(rows[name], x), "same seed, different samples"
            rows[name] = x
            walls[name].append(wall)
            cpus[name].append(cpu)
    results = {}
    for name, in_range in modes:
        texts = [chorales.row_text(r, tok) for r in rows[name].tolist()]
        tokens = rows[name].numel()
        results[name] = {**music.music_metrics(texts, tokens=rows[name].shape[1]), "tokens": tokens,
                         "best_s": min(walls[name]), "median_s": statistics.median(walls[name]),
                         "tokens_per_s": tokens / min(walls[name]), "cpu_tokens_per_s": tokens / min(cpus[name]),
                         "eos": int((rows[name] == tok.eos_id).sum())}
    save_chorales(rows["constrained (--in-range)"][:1], args.out, tok)
    mask_us = mask_cost(rows["constrained (--in-range)"], tok) * 1e6
    print("load after:", os.getloadavg())
    floor = next(iter(results.values()))  # the floor depends only on the sample length and count: the same for both
    length = rows["unconstrained"].shape[1]
    print(f"\n{args.n} samples of {length} tokens each, seed {args.seed}, torch threads {torch.get_num_threads()}\n")
    print(f"| | in range | pitch-class JS | interval JS | no parallel 5ths/8ves | tokens/s wall (best of {args.repeats}) "
          "| tokens/s CPU time | median wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['in_range_share']:.3f} | {r['pitch_class_js']:.4f} | {r['interval_js']:.4f} | "
              f"{r['no_parallels_share']:.3f} | {r['tokens_per_s']:.0f} | {r['cpu_tokens_per_s']:.0f} | {r['median_s']:.2f} |")
    print(f"| held-out floor ({args.n} val windows) | {floor['in_range_share_floor']:.3f} | {floor['pitch_class_js_floor']:.4f} | "
          f"{floor['interval_js_floor']:.4f} | {floor['no_parallels_share_floor']:.3f} | | | |")
    c, u = results["constrained (--in-range)"], results["unconstrained"]
    print(f"\nconstrained / unconstrained best wall time: {c['best_s'] / u['best_s']:.2f}x; the constraint alone "
          f"(llguidance, no model): {mask_us:.1f} us/token; eos tokens: {u['eos']} unconstrained, {c['eos']} constrained")
    print("wrote", Path(args.out), "and", Path(args.out).with_suffix(".wav"))


if __name__ == "__main__":
    main()

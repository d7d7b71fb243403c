"""genzoo's diffusion model against diffusers' UNet2DModel + DDPMScheduler, side by side in one run.

Both models are unconditional epsilon-prediction DDPMs with the cosine
schedule on digits (levels mapped to bin centres in [-1, 1]), trained by the
same hand-written loop (AdamW, warm-up + cosine LR, clipping 1.0, EMA 0.999,
batch 128): only the network and the noise code differ. diffusers' network is
chosen from a few configurations as the one closest in parameter count.

1. Speed: steps/s of each, measured in alternating blocks of steps in this
   one process, reported as a ratio (genzoo / diffusers).
2. Quality at equal wall-clock: each trains for --minutes of its own step
   time, in alternating slices so machine load hits both alike; then 1000
   samples each with a 20-step DPM-Solver++(2M) (genzoo's, and diffusers'
   DPMSolverMultistepScheduler) and FD_digits against the test set.

Needs the bench extra: pip install -e '.[bench]'.
Run: .venv/bin/python benchmarks/diffusers_vs_genzoo.py --minutes 5 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genzoo import api
from genzoo.data import from_signed_unit, load_dataset, to_signed_unit
from genzoo.eval.report import digits_sample_metrics
from genzoo.models.base import Batch, BatchRandom
from genzoo.train.ema import EMA
from genzoo.train.schedule import lr_multiplier
from genzoo.viz import save_image_grid

BATCH, LR, WARMUP, CLIP, EMA_DECAY = 128, 2e-3, 50, 1.0, 0.999
DIFFUSERS_CANDIDATES = [((32, 64), 1), ((32, 64), 2), ((48, 96), 1), ((64, 64), 1), ((64, 128), 1), ((48, 96), 2), ((64, 128), 2)]


def diffusers_unet(target_params: int):
    from diffusers import UNet2DModel

    def build(channels, layers):
        torch.manual_seed(0)
        return UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, block_out_channels=channels, layers_per_block=layers,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
        )

    sizes = {c: sum(p.numel() for p in build(*c).parameters()) for c in DIFFUSERS_CANDIDATES}
    best = min(sizes, key=lambda c: abs(sizes[c] - target_params))
    return build(*best), {"block_out_channels": best[0], "layers_per_block": best[1]}


class Contender:
    """One model, its optimizer, EMA and LR schedule, trained one step at a time."""

    def __init__(self, name, net, loss_fn, sample_fn):
        self.name, self.net, self.loss_fn, self.sample_fn = name, net, loss_fn, sample_fn
        self.opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
        self.ema = EMA(net, EMA_DECAY)
        self.step, self.seconds, self.total = 0, 0.0, None

    def train_step(self, x: torch.Tensor) -> None:
        t0 = time.perf_counter()
        for g in self.opt.param_groups:
            g["lr"] = LR * lr_multiplier(self.step, self.total, WARMUP, "cosine", 0.1)
        loss = self.loss_fn(self.net, x, self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), CLIP)
        self.opt.step()
        self.ema.update(self.net, self.step)
        self.step += 1
        self.seconds += time.perf_counter() - t0


def batches(x_all: torch.Tensor, seed: int):
    g = torch.Generator().manual_seed(seed)
    while True:
        for rows in torch.randperm(len(x_all), generator=g).split(BATCH):
            if len(rows) == BATCH:
                yield x_all[rows]


def make_contenders(train):
    genzoo_model = api.build_model("diffusion", train, overrides={"num_classes": 0}, seed=0)

    def genzoo_loss(net, x, step):
        return net.loss(Batch(x, None, BatchRandom(0, step, len(x), 0)))

    def genzoo_sample(net, n, g):
        return net.sample(n, generator=g, sampler="dpmpp2m", steps=20)

    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    unet, unet_cfg = diffusers_unet(genzoo_model.num_parameters())
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")

    def diffusers_loss(net, x, step):
        g = torch.Generator().manual_seed(step)
        x0 = to_signed_unit(x, 17)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (len(x0),), generator=g)
        return F.mse_loss(net(ddpm.add_noise(x0, noise, t), t).sample, noise)

    @torch.no_grad()
    def diffusers_sample(net, n, g):
        solver = DPMSolverMultistepScheduler.from_config(ddpm.config, algorithm_type="dpmsolver++", solver_order=2)
        solver.set_timesteps(20)
        x = torch.randn(n, 1, 8, 8, generator=g)
        for t in solver.timesteps:
            x = solver.step(net(x, t).sample, t, x).prev_sample
        return from_signed_unit(x.clamp(-1, 1), 17)

    return (
        Contender("genzoo", genzoo_model, genzoo_loss, genzoo_sample),
        Contender("diffusers", unet, diffusers_loss, diffusers_sample),
    ), unet_cfg


def measure_speed(contenders, data, rounds: int, block: int) -> dict:
    """Alternate blocks of steps so both see the same machine; median seconds per step."""
    times = {c.name: [] for c in contenders}
    for _ in range(rounds):
        for c in contenders:
            before_s, before_n = c.seconds, c.step
            for _ in range(block):
                c.train_step(next(data))
            times[c.name].append((c.seconds - before_s) / (c.step - before_n))
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("digits", "train")
    contenders, unet_cfg = make_contenders(train)
    data = batches(train.x, seed=0)

    # Warm up (first steps allocate), then time alternating blocks.
    for c in contenders:
        for _ in range(3):
            c.train_step(next(data))
    per_step = measure_speed(contenders, data, rounds=5, block=10)
    ratio = per_step["diffusers"] / per_step["genzoo"]
    print(f"seconds/step: genzoo {per_step['genzoo']:.4f}  diffusers {per_step['diffusers']:.4f}  speed ratio {ratio:.2f}x", flush=True)

    # Equal wall-clock training, in alternating 10 s slices of each model's own step time.
    budget = args.minutes * 60
    for c in contenders:
        c.total = int(budget / per_step[c.name])
    while any(c.seconds < budget and c.step < c.total for c in contenders):
        for c in contenders:
            slice_end = c.seconds + 10
            while c.seconds < min(slice_end, budget) and c.step < c.total:
                c.train_step(next(data))
        print("  " + "  ".join(f"{c.name}: {c.step} steps {c.seconds:.0f}s" for c in contenders), flush=True)

    results = {
        "budget_minutes": args.minutes, "batch": BATCH, "threads": args.threads,
        "seconds_per_step": per_step, "speed_ratio_genzoo_over_diffusers": round(ratio, 3),
        "diffusers_unet": unet_cfg, "torch": torch.__version__,
    }
    for c in contenders:
        net = c.ema.model.eval()
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            x = torch.cat([c.sample_fn(net, min(250, args.samples - i), g) for i in range(0, args.samples, 250)])
        sample_s = time.perf_counter() - t0
        m = digits_sample_metrics(x)
        save_image_grid(x[:64], args.out / f"diffusers_vs_genzoo_{c.name}.png", levels=17)
        results[c.name] = {
            "parameters": sum(p.numel() for p in c.net.parameters()),
            "train_steps": c.step, "train_seconds": round(c.seconds, 1),
            "fd_digits": m["fd_digits"], "fd_digits_floor": m["fd_digits_floor"],
            "precision": m["precision"], "recall": m["recall"], "samples_per_s": round(args.samples / sample_s, 1),
        }
        print(c.name, json.dumps(results[c.name]), flush=True)
    import diffusers

    results["diffusers_version"] = diffusers.__version__
    (args.out / "diffusers_vs_genzoo.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

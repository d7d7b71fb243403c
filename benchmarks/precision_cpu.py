"""bf16 autocast against fp32 on CPU, for every registered family on digits.

For each family (``genzoo.registry.families()``, test families skipped) two
identical models are built from the same seed with the family's default config
for digits (``api.build_model``), and two Trainers with the family's default
train settings (``api.train_config_for``) that differ only in ``precision``:
``fp32`` and ``bf16``. Both train on the same batches with the same noise.

The steps are driven here, not by ``Trainer.fit()``: ``step()`` below is the
body of ``fit``'s loop (batch rows for the step, LR from the schedule, the
Trainer's own ``_train_step``, which runs the forward passes under the
Trainer's autocast and the backward outside it, then the EMA update), without
the logging, validation and checkpointing around it. That way the two Trainers
can take turns in blocks of steps in one process, so that whatever else runs
on the machine slows both alike, and the reported bf16/fp32 ratio stands even
on a shared machine. (Absolute seconds per step do not.)

Per family:
1. Check: the first ``--check-steps`` steps of each from the same initial
   weights, in alternating blocks. bf16 "ran end to end" when every metric of
   every step and every weight afterwards is finite (and every later timed
   step's metrics too). Reported: the training loss of step ``--check-steps``
   as each Trainer logged it (same batch, same noise; under bf16 autocast
   that value is itself computed in bf16, so it is rounded to bf16's 8-bit
   mantissa), and, like for like, each model's loss on the validation split
   (350 images, fixed noise) evaluated in fp32 without autocast.
2. Speed: ``--warmup`` untimed steps each, then ``--rounds`` rounds of
   ``--block`` steps each, alternating fp32, bf16, fp32, bf16, ...; the median
   over rounds of seconds per step is reported, and bf16/fp32 of the medians
   (the per-round ratios are in the JSON).

bf16 autocast on CPU pays off only where the CPU multiplies bf16 natively
(AVX512_BF16, AMX); elsewhere, and for small layers where the casts dominate,
it is usually slower than fp32. The CPU flags that matter are recorded. On a
CPU that has them, ``ONEDNN_MAX_CPU_ISA=AVX512_CORE`` keeps oneDNN (which runs
the convolutions and matrix products) off the bf16 instructions, an
approximation of an AVX-512 CPU without them (PyTorch's own kernels are not
capped); the JSON records the variable.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_cpu.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
import traceback
from pathlib import Path

import torch

from genzoo import api
from genzoo.data import load_dataset
from genzoo.registry import families
from genzoo.train.schedule import lr_multiplier, set_lr
from genzoo.train.trainer import Trainer, batch_indices

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_facts() -> dict:
    """The CPU model and the flags that decide whether bf16 math is native."""
    model, flags = platform.processor() or "?", set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = set(value.split())
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn_bf16 = None
    return {
        "model_name": model,
        "logical_cpus": os.cpu_count(),
        "flags": {f: f in flags for f in FLAGS_OF_INTEREST},
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_bf16_supported": mkldnn_bf16,  # what the CPU offers, not what ONEDNN_MAX_CPU_ISA lets oneDNN use
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),  # None: oneDNN uses everything the CPU has
    }


def step(trainer: Trainer) -> dict[str, float]:
    """One training step exactly as ``Trainer.fit``'s loop takes it (single process)."""
    cfg = trainer.config
    rows = batch_indices(len(trainer.data.x), cfg.batch_size, trainer.step, cfg.seed)
    set_lr(trainer.optimizers, trainer.base_lrs,
           lr_multiplier(trainer.step, trainer.total_steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio))
    metrics = trainer._train_step(rows, 0)
    if trainer.ema:
        trainer.ema.update(trainer.model, trainer.step)
    trainer.step += 1
    return {k: float(v) for k, v in metrics.items()}


def run_family(family: str, data, val, args) -> dict:
    trainers, history = {}, {"fp32": [], "bf16": []}
    for p in ("fp32", "bf16"):
        model = api.build_model(family, data, seed=args.seed)
        config = api.train_config_for(type(model), data, val_every=0, progress=False, seed=args.seed, device="cpu")
        trainers[p] = Trainer(model, data, config.replace(precision=p))
    cfg = trainers["fp32"].config
    same_init = all(torch.equal(a, b) for a, b in zip(trainers["fp32"].model.state_dict().values(),
                                                      trainers["bf16"].model.state_dict().values()))
    row = {"family": family, "parameters": trainers["fp32"].model.num_parameters(), "batch_size": cfg.batch_size,
           "schedule_steps": trainers["fp32"].total_steps, "same_init": same_init}
    errors: dict[str, str] = {}

    def take(p: str, n: int) -> float | None:
        """n steps of one Trainer; seconds per step, or None once it has failed."""
        if p in errors:
            return None
        t0 = time.perf_counter()
        try:
            for _ in range(n):
                history[p].append(step(trainers[p]))
        except Exception as e:  # a family that cannot run in bf16 is a result, not a crash
            errors[p] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
            return None
        return (time.perf_counter() - t0) / n

    # 1. The first --check-steps steps of each, in alternating blocks (they also warm up both).
    while any(len(history[p]) < args.check_steps and p not in errors for p in history):
        for p in ("fp32", "bf16"):
            take(p, min(args.block, args.check_steps - len(history[p])))
    for p in ("fp32", "bf16"):
        h = history[p]
        finite_metrics = all(math.isfinite(v) for m in h for v in m.values())
        finite_weights = all(torch.isfinite(t).all().item() for t in trainers[p].model.state_dict().values() if t.is_floating_point())
        row[f"{p}_finite"] = p not in errors and len(h) >= args.check_steps and finite_metrics and finite_weights
        key = "loss" if h and "loss" in h[0] else (sorted(h[0])[0] if h else None)
        row["loss_key"] = key
        if key and len(h) >= args.check_steps:
            row[f"{p}_loss_first"] = h[0][key]
            row[f"{p}_loss_at_check"] = h[args.check_steps - 1][key]
            row[f"{p}_loss_mean_last10"] = statistics.fmean(m[key] for m in h[args.check_steps - 10 : args.check_steps])
        # the same weights scored in fp32 (no autocast) on the validation split, fixed noise:
        # a like-for-like measure of what each precision's training reached
        if row[f"{p}_finite"] and val is not None:
            row[f"{p}_val_loss_fp32_at_check"] = trainers[p].model.validation_loss(val.x, val.y, batch_size=256, seed=args.seed)
        if p in errors:
            row[f"{p}_error"] = errors[p]

    # 2. Timed rounds: --warmup untimed steps each, then blocks alternating fp32, bf16, fp32, ...
    for p in ("fp32", "bf16"):
        take(p, args.warmup)
    times = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for p in ("fp32", "bf16"):
            s = take(p, args.block)
            if s is not None:
                times[p].append(s)
    for p in ("fp32", "bf16"):
        row[f"{p}_s_per_step"] = statistics.median(times[p]) if times[p] else None
        row[f"{p}_s_per_step_rounds"] = [round(t, 5) for t in times[p]]
        row[f"{p}_steps_run"] = len(history[p])
        row[f"{p}_finite_all_steps"] = p not in errors and all(math.isfinite(v) for m in history[p] for v in m.values())
        if p in errors:
            row[f"{p}_error"] = errors[p]
    if row["fp32_s_per_step"] and row["bf16_s_per_step"]:
        row["ratio_bf16_over_fp32"] = row["bf16_s_per_step"] / row["fp32_s_per_step"]
        # the same ratio round by round (each round's bf16 block ran right after its fp32 block)
        row["ratio_per_round"] = [round(b / f, 3) for f, b in zip(times["fp32"], times["bf16"])]
    return row


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) and v is not None else "-"


def table(rows: list[dict], check_steps: int) -> str:
    n = check_steps
    lines = [f"| family | params | batch | fp32 s/step | bf16 s/step | bf16/fp32 | bf16 finite | train loss @{n} fp32 | train loss @{n} bf16 "
             f"| val loss (fp32 eval) @{n}: fp32-trained | val loss (fp32 eval) @{n}: bf16-trained |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        finite = "yes" if r.get("bf16_finite") and r.get("bf16_finite_all_steps") else "NO"
        lines.append(
            f"| {r['family']} | {r['parameters']:,} | {r['batch_size']} | {fmt(r.get('fp32_s_per_step'), '.4f')} | "
            f"{fmt(r.get('bf16_s_per_step'), '.4f')} | {fmt(r.get('ratio_bf16_over_fp32'), '.2f')} | {finite} | "
            f"{fmt(r.get('fp32_loss_at_check'), '.3f')} | {fmt(r.get('bf16_loss_at_check'), '.3f')} | "
            f"{fmt(r.get('fp32_val_loss_fp32_at_check'), '.3f')} | {fmt(r.get('bf16_val_loss_fp32_at_check'), '.3f')} |")
    return "\n".join(lines)


def chart(rows: list[dict], path: Path, cpu: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if r.get("ratio_bf16_over_fp32")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar([r["family"] for r in rs], [r["ratio_bf16_over_fp32"] for r in rs], color="#4c72b0")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    for i, r in enumerate(rs):
        ax.text(i, r["ratio_bf16_over_fp32"], f"{r['ratio_bf16_over_fp32']:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("seconds/step, bf16 / fp32")
    ax.set_title(f"bf16 autocast vs fp32 training step on CPU ({cpu['model_name']}); >1 = bf16 slower", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps each before the timed rounds")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=10, help="steps per timed block (and per check block)")
    ap.add_argument("--check-steps", type=int, default=30, help="steps over which bf16 must stay finite; losses compared after it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default="", help="comma-separated subset (default: every registered family)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    if args.check_steps < 10:
        ap.error("--check-steps must be at least 10")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    cpu = cpu_facts()
    print(f"CPU: {cpu['model_name']}  flags: {', '.join(f for f, on in cpu['flags'].items() if on)}  "
          f"mkldnn bf16: {cpu['mkldnn_bf16_supported']}  ONEDNN_MAX_CPU_ISA={cpu['ONEDNN_MAX_CPU_ISA']}  "
          f"torch {cpu['torch']} ({cpu['torch_cpu_capability']})", flush=True)
    names = [f for f in families() if not f.startswith("test-")]
    if args.families:
        names = [f for f in args.families.split(",") if f]
    data, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    started, load_before = time.perf_counter(), os.getloadavg()
    rows = []
    for name in names:
        t0 = time.perf_counter()
        try:
            row = run_family(name, data, val, args)
        except Exception as e:  # building the family failed: record it and go on
            traceback.print_exc()
            row = {"family": name, "parameters": 0, "batch_size": 0, "error": f"{type(e).__name__}: {e}"}
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"{name}: fp32 {fmt(row.get('fp32_s_per_step'), '.4f')} s/step, bf16 {fmt(row.get('bf16_s_per_step'), '.4f')} s/step, "
              f"ratio {fmt(row.get('ratio_bf16_over_fp32'), '.2f')}, bf16 finite {row.get('bf16_finite')}, "
              f"loss@{args.check_steps} {fmt(row.get('fp32_loss_at_check'), '.3f')} vs {fmt(row.get('bf16_loss_at_check'), '.3f')}"
              f"  ({row['wall_s']} s)", flush=True)

    result = {
        "what": "seconds per training step, bf16 autocast vs fp32, Trainer defaults per family, digits, one process, alternating blocks",
        "command": ("ONEDNN_MAX_CPU_ISA=" + cpu["ONEDNN_MAX_CPU_ISA"] + " " if cpu["ONEDNN_MAX_CPU_ISA"] else "")
        + "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_cpu.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "families") or v),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu": cpu,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
        "families": rows,
    }
    (args.out / "precision_cpu.json").write_text(json.dumps(result, indent=2))
    print()
    print(table(rows, args.check_steps))
    try:
        chart(rows, args.out / "precision_cpu.png", cpu)
    except ImportError:
        print("matplotlib not installed: no chart")


if __name__ == "__main__":
    main()

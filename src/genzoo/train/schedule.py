"""Learning-rate schedule: linear warm-up, then cosine decay (or constant)."""

from __future__ import annotations

import math

import torch


def lr_multiplier(step: int, total: int | None, warmup: int, kind: str, min_ratio: float) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant" or not total:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizers: dict, base_lrs: dict, multiplier: float) -> None:
    """Set every param group's lr from its base lr; stateless, so resume needs only the step."""
    for name, opt in optimizers.items():
        for group, base in zip(opt.param_groups, base_lrs[name]):
            group["lr"] = base * multiplier


def base_lrs(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, list[float]]:
    return {name: [g["lr"] for g in opt.param_groups] for name, opt in optimizers.items()}

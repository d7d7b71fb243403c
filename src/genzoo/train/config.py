"""Trainer settings: one dataclass, saved with every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from genzoo.core.errors import GenzooError


@dataclass
class TrainConfig:
    steps: int | None = None  # stop after this many optimizer steps ...
    minutes: float | None = None  # ... or after this much training time, whichever comes first
    batch_size: int = 128  # the global batch, split evenly across processes
    grad_accum: int = 1  # micro-batches per process per step (same result as the whole batch, less memory)
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 50
    schedule: str = "cosine"  # "cosine" (decays to min_lr_ratio * lr) or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999  # None turns EMA off
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, fp16
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 500
    checkpoint_minutes: float | None = None  # also checkpoint after this much wall-clock since the last one
    sample_every: int = 0  # 0: a sample grid at the end only
    log_every: int = 25
    num_samples: int = 64  # images in each sample grid
    val_every: int = 250  # steps between validation losses on the val split (0: none); the best weights are kept
    patience: int = 0  # stop after this many validations without improvement (0: train to the budget)
    select_best: bool = True  # keep the weights with the lowest validation loss (False: only log it)
    # After a non-finite loss or a divergence the family reports (FloatingPointError), restore the last
    # checkpoint and go on with a new seed, at most this many times per run (0: stop with an error).
    divergence_retries: int = 0
    # torch.compile the family's training forward (GenerativeModel.compile_for_training). Off by
    # default: on this 2-core CPU the 4 x 128 GPT at context 256 stepped only 1.05x faster compiled
    # (benchmarks/README.md, section 14), after a one-off compile that a --minutes budget pays for.
    compile: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.steps is None and self.minutes is None:
            raise GenzooError("give a budget: --steps N or --minutes M")
        if self.steps is not None and self.steps < 1:
            raise GenzooError(f"--steps must be at least 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise GenzooError(f"--minutes must be positive, got {self.minutes}")
        if self.batch_size < 1:
            raise GenzooError(f"batch size must be at least 1, got {self.batch_size}")
        if self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise GenzooError(f"--grad-accum {self.grad_accum} must be >= 1 and divide the batch size {self.batch_size}")
        if self.checkpoint_every < 1 or (self.checkpoint_minutes is not None and self.checkpoint_minutes <= 0):
            raise GenzooError("checkpoint_every must be >= 1 and checkpoint_minutes positive")
        if self.val_every < 0 or self.patience < 0:
            raise GenzooError(f"val_every and patience must be >= 0, got {self.val_every} and {self.patience}")
        if self.divergence_retries < 0:
            raise GenzooError(f"divergence_retries must be >= 0, got {self.divergence_retries}")
        if self.schedule not in ("cosine", "constant"):
            raise GenzooError(f"unknown schedule {self.schedule!r}; valid: cosine, constant")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise GenzooError(f"unknown precision {self.precision!r}; valid: auto, fp32, bf16, fp16")
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

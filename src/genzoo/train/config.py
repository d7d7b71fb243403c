"""Trainer settings: one dataclass, saved with every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from genzoo.core.errors import GenzooError


@dataclass
class TrainConfig:
    # Fields with a "help" are the command line's training options (genzoo.cli.training derives them from here).
    steps: int | None = field(default=None, metadata={"help": 'optimizer steps'})
    minutes: float | None = field(default=None, metadata={"help": 'wall-clock training budget (whichever of --steps/--minutes comes first)'})
    batch_size: int = field(default=128, metadata={"help": 'global batch size (split evenly across processes)'})
    grad_accum: int = field(default=1, metadata={"help": 'micro-batches per step (the same update as the whole batch, less memory)'})
    lr: float = field(default=1e-3, metadata={"help": 'peak learning rate'})
    weight_decay: float = field(default=0.0, metadata={"help": 'AdamW weight decay (weight matrices only)'})
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = field(default=50, metadata={"help": 'linear warm-up steps'})
    schedule: str = field(default="cosine", metadata={"help": 'learning-rate schedule after warm-up: cosine or constant'})  # "cosine" (decays to min_lr_ratio * lr) or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float | None = field(default=1.0, metadata={"help": 'clip the gradient norm at this (0: off)'})
    ema_decay: float | None = field(default=0.999, metadata={"help": 'EMA decay (0 turns EMA off)'})  # None turns EMA off
    precision: str = field(default="auto", metadata={"help": 'auto, fp32, bf16, fp16'})  # auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, fp16
    device: str = field(default="auto", metadata={"help": 'auto, cpu, cuda, cuda:1'})
    seed: int = field(default=0, metadata={"help": 'random seed (same seed, same weights)'})
    checkpoint_every: int = field(default=500, metadata={"help": 'steps between checkpoints'})
    checkpoint_minutes: float | None = field(default=None, metadata={"help": 'also checkpoint after this many minutes since the last one'})
    sample_every: int = field(default=0, metadata={"help": 'steps between sample grids (0: at the end)'})
    log_every: int = 25
    num_samples: int = 64  # images in each sample grid
    val_every: int = field(default=250, metadata={"help": 'steps between validation losses; the best weights go to best/ (0: off)'})
    patience: int = field(default=0, metadata={"help": 'stop after this many validations without improvement (0: never)'})
    select_best: bool = field(default=True, metadata={"help": 'keep the best weights on validation (default: per family)'})
    # After a non-finite loss or a divergence the family reports (FloatingPointError), restore the last
    # checkpoint and go on with a new seed, at most this many times per run (0: stop with an error).
    divergence_retries: int = field(default=0, metadata={"help": 'after a divergence, restore the last checkpoint and retry with a new seed, at most this often'})
    # torch.compile the family's training forward (GenerativeModel.compile_for_training). Off by
    # default: on this 2-core CPU the 4 x 128 GPT at context 256 stepped only 1.05x faster compiled
    # (benchmarks/README.md, section 14), after a one-off compile that a --minutes budget pays for.
    compile: bool = field(default=False, metadata={"help": 'torch.compile the training step (gpt; needs a C++ compiler on CPU)'})
    # Differential privacy (genzoo.train.dp): DP-SGD with per-example clipping, Poisson sampling and an RDP accountant.
    dp_epsilon: float | None = field(default=None, metadata={"help": 'train with differential privacy (DP-SGD through Opacus) spending at most this epsilon over --steps'})
    dp_delta: float | None = field(default=None, metadata={"help": 'DP delta (default 1/(10 N) for N training examples)'})
    dp_max_grad_norm: float = field(default=1.0, metadata={"help": 'DP: clip each example\'s gradient to this L2 norm'})
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
        if self.dp_epsilon is not None and not self.dp_epsilon > 0:
            raise GenzooError(f"--dp-epsilon must be positive, got {self.dp_epsilon}")
        if self.dp_epsilon is None and self.dp_delta is not None:
            raise GenzooError("--dp-delta needs --dp-epsilon (the privacy budget to spend)")
        if not self.dp_max_grad_norm > 0:
            raise GenzooError(f"--dp-max-grad-norm must be positive, got {self.dp_max_grad_norm}")
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

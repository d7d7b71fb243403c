"""The contract every genzoo model follows.

A model is a ``torch.nn.Module`` built from a dataclass config. It declares
its capabilities so that the CLI, bench and server ask rather than guess, and
it owns its update rule (``training_step``) so that families with several
optimizers or inner loops plug into the same Trainer, which owns everything
around the update: budget, LR schedule, clipping, EMA, precision,
checkpoints, resume, distribution.
"""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from genzoo.errors import GenzooError

# What a family can do. The CLI and bench check these before asking.
SAMPLE = "sample"  # draw new examples
LOG_PROB = "log_prob"  # log-likelihood of the discrete data (exact or a bound, see ``likelihood``)
LABEL_CONDITION = "label_condition"  # sample(condition=<class ids>)
TEXT_CONDITION = "text_condition"
COMPLETE = "complete"  # fill in a partly observed example
TRANSLATE = "translate"
INFILL = "infill"
INTERPOLATE = "interpolate"  # decode a path between two examples' latents


@dataclass
class ModelConfig:
    """Base of every family's config. ``data`` is the dataset spec (``Dataset.spec()``)."""

    data: dict = field(default_factory=dict)
    variant: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise GenzooError(f"{cls.__name__}: unknown config fields {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)


class GenerativeModel(nn.Module):
    """Base class: config, capabilities, checkpoint I/O and the training hooks."""

    family: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    capabilities: ClassVar[frozenset[str]] = frozenset()
    likelihood: ClassVar[str | None] = None  # "exact", "bound" or None

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    # ---- what a family implements -------------------------------------
    @classmethod
    def default_config(cls, data_spec: dict, variant: str = "") -> ModelConfig:
        """A sensible config for this data (and variant)."""
        return cls.config_class(data=data_spec, variant=variant)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        """Trainer settings (batch size, lr, ...) that suit this family on this data."""
        return {}

    def loss(self, batch: "Batch") -> torch.Tensor:
        """Scalar loss for single-optimizer families (used by the default ``training_step``)."""
        raise NotImplementedError

    def configure_optimizers(self, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers. Families with several (GANs) return several."""
        return {"main": torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)}

    def training_step(self, batch: "Batch", step: int, opt: "Updater") -> dict[str, float]:
        """One training step: compute losses and call ``opt.step(name, loss)`` per optimizer update."""
        loss = self.loss(batch)
        opt.step("main", loss)
        return {"loss": loss.detach().item()}

    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None, **options) -> torch.Tensor:
        """``n`` new examples in data space (integer levels for discrete data)."""
        raise GenzooError(f"{self.family} cannot sample")

    def log_prob(self, x: torch.Tensor, **options) -> torch.Tensor:
        """Per-example log-likelihood in nats of the data as stored (discrete levels where discrete)."""
        raise GenzooError(f"{self.family} has no likelihood; families with one: see `genzoo list`")

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor | None = None, *, batch_size: int = 256, seed: int = 0) -> float | None:
        """The training objective on held-out data, with noise fixed by ``seed`` so that values from
        different steps compare; the Trainer keeps the weights where it is lowest. None when the
        family has no single loss (adversarial families), which turns validation off."""
        if type(self).loss is GenerativeModel.loss:
            return None
        total = 0.0
        with self._eval_mode():
            for i, start in enumerate(range(0, len(x), batch_size)):
                xb = x[start : start + batch_size].to(self.device)
                yb = y[start : start + batch_size].to(self.device) if y is not None else None
                total += float(self.loss(Batch(xb, yb, BatchRandom(seed, i, len(xb), 0, self.device)))) * len(xb)
        return total / len(x)

    def save_plots(self, directory: Path, data) -> list[Path]:
        """Family-specific pictures written at the end of training (e.g. a flow's 2-D density)."""
        return []

    @classmethod
    def sampler_options(cls) -> dict[str, Any]:
        """Options ``sample`` accepts, with defaults: the CLI validates against these."""
        return {}

    # ---- shared machinery ----------------------------------------------
    @property
    def data_spec(self) -> dict:
        return self.config.data

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @contextmanager
    def _eval_mode(self):
        """Eval mode for the block (no dropout), then the caller's mode back."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def _check_data(self, x) -> torch.Tensor:
        """``x`` as floats on the model's device, or a clear error when it is not this model's data
        (wrong shape, or not integer levels where the data is discrete)."""
        shape, levels = tuple(self.data_spec["shape"]), self.data_spec.get("levels")
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if tuple(x.shape[1:]) != shape:
            raise GenzooError(f"expected data of shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        if levels and ((x != x.round()) | (x < 0) | (x > levels - 1)).any():
            raise GenzooError(f"this model expects integer levels 0..{levels - 1}; got other values")
        return x

    def _bind_data_spec(self) -> dict:
        """Set ``shape``, ``levels`` and ``dims`` from the config's data spec (returned), or refuse clearly."""
        spec = self.config.data
        if not spec or not spec.get("shape"):
            name = type(self).__name__
            raise GenzooError(f"{name} needs a data spec with a shape; build it with {name}.default_config(dataset.spec())")
        self.shape = tuple(spec["shape"])
        self.levels = spec.get("levels")
        self.dims = math.prod(self.shape)
        return spec

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _labels(self, y, n: int) -> torch.Tensor | None:
        """Labels for a class-conditional model (None for an unconditional one); refuses a missing label."""
        if not getattr(self.config, "num_classes", 0):
            return None
        if y is None:
            raise GenzooError(f"this {self.family} is class-conditional (num_classes > 0): give labels (batch.y / condition=)")
        return self.check_condition(y, n)

    def check_condition(self, condition, n: int) -> torch.Tensor | None:
        """Turn ``condition`` (an int or a sequence of class ids) into a (n,) tensor, or refuse clearly."""
        if condition is None:
            return None
        if LABEL_CONDITION not in self.capabilities or not getattr(self.config, "num_classes", 0):
            raise GenzooError(
                f"this {self.family} model was not trained with class conditioning; "
                "train with a labelled dataset and --set num_classes=... (or the conditional variant)"
            )
        k = self.config.num_classes
        c = torch.as_tensor(condition, dtype=torch.long).flatten()
        if c.numel() == 1:
            c = c.expand(n)
        if c.numel() != n:
            raise GenzooError(f"condition has {c.numel()} labels for {n} samples; give one label or one per sample")
        if (c < 0).any() or (c >= k).any():
            raise GenzooError(f"condition labels must lie in 0..{k - 1}, got {c.tolist()[:10]}")
        return c.to(self.device)

    def save_pretrained(self, directory: str | Path, state_dict: dict | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (not atomic by itself:
        the Trainer writes into a fresh folder and renames it)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sd = state_dict if state_dict is not None else self.state_dict()
        save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(directory / "model.safetensors"))
        meta = {"family": self.family, "config": self.config.to_dict(), "format": "genzoo/1"}
        (directory / "config.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "GenerativeModel":
        """Load any family's checkpoint folder (dispatches on ``config.json``'s family)."""
        from genzoo.checkpoint import load_model

        model = load_model(directory, map_location)
        if cls is not GenerativeModel and not isinstance(model, cls):
            raise GenzooError(f"{directory} holds a {model.family} model, not a {cls.family}")
        return model


@dataclass
class Batch:
    """What ``training_step`` receives: this process's share of one global batch."""

    x: torch.Tensor
    y: torch.Tensor | None
    rng: "BatchRandom"

    def __len__(self) -> int:
        return len(self.x)


class BatchRandom:
    """Per-example randomness that does not depend on how a batch is split.

    Each draw makes the noise for the whole global batch from a generator
    seeded by (seed, step) and keeps this process's rows. A run on 2
    processes therefore sees exactly the noise a single process sees, and
    a resumed run the noise it would have seen, without saving RNG state.
    """

    def __init__(self, seed: int, step: int, global_batch: int, offset: int, device: torch.device | str = "cpu"):
        self.global_batch, self.offset = global_batch, offset
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed((seed * 1_000_003 + step * 7_919 + 17) % (2**63))
        self._local = None

    def _rows(self, t: torch.Tensor, local: int) -> torch.Tensor:
        return t[self.offset : self.offset + local]

    def randn(self, local: int, *shape: int) -> torch.Tensor:
        t = torch.randn(self.global_batch, *shape, generator=self.generator, device=self.device)
        return self._rows(t, local)

    def rand(self, local: int, *shape: int) -> torch.Tensor:
        t = torch.rand(self.global_batch, *shape, generator=self.generator, device=self.device)
        return self._rows(t, local)

    def randint(self, high: int, local: int, *shape: int) -> torch.Tensor:
        t = torch.randint(high, (self.global_batch, *shape), generator=self.generator, device=self.device)
        return self._rows(t, local)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(len(x), *x.shape[1:]).to(x)  # x's dtype and device

    def rand_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.rand(len(x), *x.shape[1:]).to(x)


class Updater:
    """The Trainer's side of an update, handed to ``training_step``.

    ``step(name, loss)`` zeroes the grads of optimizer ``name``'s parameters,
    back-propagates (scaled under fp16), averages gradients across processes,
    clips, and steps that optimizer. Families never touch scaling, clipping
    or all-reduce themselves.
    """

    def __init__(self, optimizers: dict, grad_clip: float | None, scaler=None, world_size: int = 1):
        self.optimizers = optimizers
        self.grad_clip = grad_clip
        self.scaler = scaler
        self.world_size = world_size
        self.grad_norms: dict[str, float] = {}

    def params(self, name: str) -> list[torch.nn.Parameter]:
        return [p for g in self.optimizers[name].param_groups for p in g["params"]]

    def step(self, name: str, loss: torch.Tensor) -> None:
        if name not in self.optimizers:
            raise KeyError(f"no optimizer named {name!r}; this model has {sorted(self.optimizers)}")
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"loss for optimizer {name!r} is {loss.item()}")
        opt = self.optimizers[name]
        params = self.params(name)
        for p in params:
            p.grad = None
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.world_size > 1:
            _all_reduce_mean([p for p in params if p.grad is not None], self.world_size)
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        if self.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.grad_norms[name] = float(norm)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()


def generator_device(generator: torch.Generator | None, default: torch.device | str = "cpu") -> torch.device:
    """Where random numbers from ``generator`` are drawn (torch's default generator lives on the CPU)."""
    return generator.device if generator is not None else torch.device(default)


def _all_reduce_mean(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average gradients over processes in one flat buffer (what DDP does per bucket)."""
    import torch.distributed as dist

    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    i = 0
    for g in grads:
        g.copy_(flat[i : i + g.numel()].view_as(g))
        i += g.numel()

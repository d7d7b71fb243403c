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
import functools
import inspect
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.family import FAMILIES, family_info
from genzoo.nn.dropout import noise_source

# What a family can do. The CLI and bench check these before asking.
SAMPLE = "sample"  # draw new examples
LOG_PROB = "log_prob"  # log-likelihood of the discrete data (exact or a bound, see ``likelihood``)
LABEL_CONDITION = "label_condition"  # sample(condition=<class ids>)
TEXT_CONDITION = "text_condition"
COMPLETE = "complete"  # fill in a partly observed example
TRANSLATE = "translate"
INFILL = "infill"
INTERPOLATE = "interpolate"  # decode a path between two examples' latents
SEQ2SEQ = "seq2seq"  # map an input text to an output text (generate_text)
CLASSIFY = "classify"  # class probabilities of an example (predict_proba, predict)
SCORE = "score"  # agreement of an example with a text (score)
EMBED = "embed"  # one vector per text (embed)
CAPABILITIES = frozenset({EMBED, SAMPLE, LOG_PROB, LABEL_CONDITION, TEXT_CONDITION, COMPLETE, TRANSLATE, INFILL, INTERPOLATE, SEQ2SEQ,
                          CLASSIFY, SCORE})


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
    # A loss that needs autograd inside (Langevin steps of an energy-based model) sets this, so that
    # validation runs it with gradients enabled (the result is still detached).
    loss_needs_grad: ClassVar[bool] = False
    # fused AdamW: one kernel over all parameters instead of ~10 small ops per tensor (a family opts in
    # where it measured faster: about 10% of a CPU step for the diffusion UNet)
    fused_optimizer: ClassVar[bool] = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tokenizer = None  # text families: the TextTokenizer saved beside the weights (tokenizer.json)

    def __init_subclass__(cls, **kwargs):
        # Whoever calls a family's loss or training_step (the Trainer, validation, a test, a user's
        # own loop), its dropout masks come from the batch's random stream: see genzoo.nn.dropout.
        super().__init_subclass__(**kwargs)
        for name in ("loss", "training_step"):
            if name in cls.__dict__:
                setattr(cls, name, noise_from_batch(cls.__dict__[name]))

    # ---- what a family implements -------------------------------------
    @classmethod
    def defaults_for(cls, data_spec: dict) -> ModelConfig:
        """The family's sensible config for this data, before any variant is applied."""
        return cls.config_class(data=data_spec)

    @classmethod
    def default_config(cls, data_spec: dict, variant: str = "") -> ModelConfig:
        """``defaults_for(data_spec)`` with ``variant``'s overrides applied: the one place variants are
        applied (the registry's variant table), so no family re-implements it."""
        info = family_info(cls.family)
        variant = variant or info.default_variant_for(data_spec.get("kind"))
        overrides = info.variant_overrides(variant, data_spec)
        return dataclasses.replace(cls.defaults_for(data_spec), variant=variant, **overrides)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        """Trainer settings (batch size, lr, ...) that suit this family on this data."""
        return {}

    def prepare_data(self, data):
        """The dataset as this model trains on it (a text model cuts a token stream into windows of
        its context + 1); the Trainer calls it for the training and validation splits."""
        return data

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        """Config fields for the smallest working model on this data (dropout kept on where the family
        has it): what the conformance suite trains. A family without them is tested at full size."""
        return {}

    def loss(self, batch: "Batch") -> torch.Tensor:
        """Scalar loss for single-optimizer families (used by the default ``training_step``)."""
        raise NotImplementedError

    def configure_optimizers(self, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers. Families with several (GANs) return several, each over
        ``decay_groups(part, weight_decay)`` so that only weight matrices decay."""
        return {"main": torch.optim.AdamW(decay_groups(self, weight_decay), lr=lr, betas=betas, fused=self.fused_optimizer or None)}

    def training_step(self, batch: "Batch", step: int, opt: "Updater") -> dict[str, float]:
        """One training step: compute losses and call ``opt.step(name, loss)`` per optimizer update."""
        loss = self.loss(batch)
        opt.step("main", loss)
        return {"loss": loss.detach().item()}

    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None, **options) -> torch.Tensor:
        """``n`` new examples in data space (integer levels for discrete data)."""
        raise self._cannot(SAMPLE, "sample")

    def log_prob(self, x: torch.Tensor, **options) -> torch.Tensor:
        """Per-example log-likelihood in nats of the data as stored (discrete levels where discrete)."""
        raise self._cannot(LOG_PROB, "compute a likelihood")

    def complete(self, x: torch.Tensor, observed_mask: torch.Tensor, **options) -> torch.Tensor:
        """Fill in the unobserved part of each example (``observed_mask`` True where given)."""
        raise self._cannot(COMPLETE, "complete a partly observed example")

    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8, **options) -> torch.Tensor:
        """Decode a path between two examples' latents."""
        raise self._cannot(INTERPOLATE, "interpolate between examples")

    def translate(self, x: torch.Tensor, direction: str = "A", **options) -> torch.Tensor:
        """Map images of domain ``direction`` ("A" or "B") into the other domain (unpaired translation)."""
        raise self._cannot(TRANSLATE, "translate between image domains")

    def predict_proba(self, x: torch.Tensor, **options) -> torch.Tensor:
        """(N, num_classes) class probabilities of each example."""
        raise self._cannot(CLASSIFY, "classify")

    def predict(self, x: torch.Tensor, **options) -> torch.Tensor:
        """The most probable class of each example."""
        return self.predict_proba(x, **options).argmax(1)

    def score(self, x: torch.Tensor, texts: list[str], **options) -> torch.Tensor:
        """(N, len(texts)) agreement of each example with each text, higher where they agree."""
        raise self._cannot(SCORE, "score examples against text")

    def generate_text(self, texts: list[str] | str, **options) -> list[str]:
        """An output text for each input text (text-to-text)."""
        raise self._cannot(SEQ2SEQ, "map input texts to output texts")

    def fill(self, texts: list[str] | str, **options) -> list[dict]:
        """Each text with its ``[MASK]`` tokens filled in (masked-LM infilling)."""
        raise self._cannot(INFILL, "fill in [MASK] tokens")

    def embed(self, texts: list[str], **options) -> torch.Tensor:
        """(N, dim) vectors of ``texts``."""
        raise self._cannot(EMBED, "embed texts")

    def _cannot(self, capability: str, verb: str) -> GenzooError:
        return GenzooError(f"{self.family or type(self).__name__} cannot {verb}; families that can have "
                           f"the '{capability}' capability (see `genzoo list`)")

    def validation_loss(self, x: torch.Tensor, y: torch.Tensor | None = None, *, batch_size: int = 256, seed: int = 0) -> float | None:
        """The training objective on held-out data, with noise fixed by ``seed`` so that values from
        different steps compare; the Trainer keeps the weights where it is lowest. None when the
        family has no single loss (adversarial families), which turns validation off.
        Runs without gradients unless the family's loss needs them inside (``loss_needs_grad``)."""
        if type(self).loss is GenerativeModel.loss:
            return None
        total = 0.0
        with self._eval_mode(), torch.set_grad_enabled(self.loss_needs_grad):
            for i, start in enumerate(range(0, len(x), batch_size)):
                xb = x[start : start + batch_size].to(self.device)
                yb = y[start : start + batch_size].to(self.device) if y is not None else None
                rng = BatchRandom(seed, i, len(xb), 0, self.device)
                with noise_source(rng):
                    total += float(self.loss(Batch(xb, yb, rng)).detach()) * len(xb)
        return total / len(x)

    def compile_for_training(self, backend: str = "inductor") -> None:
        """Compile what a training step runs with ``torch.compile(backend=...)`` (the Trainer's
        ``compile`` setting). A family opts in by overriding this; sampling and validation stay eager."""
        raise GenzooError(f"{self.family} does not support --compile yet; families that do: gpt")

    def training_state(self) -> dict[str, Any]:
        """State that is not weights but must survive a resume (a replay buffer, a chain's last
        samples): saved per process in the trainer state, never in ``model.safetensors`` or the EMA copy."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what ``training_state`` returned."""
        if state:
            raise GenzooError(f"{self.family} keeps no training state, but the checkpoint holds {sorted(state)}")

    def save_plots(self, directory: Path, data) -> list[Path]:
        """Family-specific pictures written at the end of training (e.g. a flow's 2-D density)."""
        return []

    @classmethod
    def sampler_options(cls) -> dict[str, Any]:
        """Options ``sample`` accepts, with defaults: its keyword-only parameters other than
        ``condition`` and ``generator``, read from its signature (never a second, hand-kept list)."""
        params = inspect.signature(cls.sample).parameters.values()
        return {p.name: p.default for p in params
                if p.kind is p.KEYWORD_ONLY and p.name not in ("condition", "generator")}

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
        try:
            c = torch.as_tensor(condition).flatten()
        except (TypeError, ValueError, RuntimeError):
            c = None
        if c is None or c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise GenzooError(f"this {self.family} takes class labels (integers 0..{k - 1}) as its condition, got {condition!r:.80}")
        c = c.long()
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
        if self.tokenizer is not None:
            self.tokenizer.save(directory)

    @staticmethod
    def read_meta(directory: str | Path) -> dict:
        """``config.json`` of a checkpoint folder, or a clear error when it is missing or corrupt."""
        f = Path(directory) / "config.json"
        try:
            meta = json.loads(f.read_text())
            meta["family"], meta["config"]
        except FileNotFoundError:
            raise GenzooError(f"{directory} has no config.json; pass a checkpoint folder written by save_pretrained") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise GenzooError(f"{f} is corrupt or not a genzoo config ({e}); retrain or restore it") from e
        return meta

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "GenerativeModel":
        """Load a checkpoint folder (``config.json`` + ``model.safetensors``). On ``GenerativeModel``
        itself it dispatches on the folder's family; on a family's class it refuses another family.
        (Run folders, ``best/`` and interrupted swaps: ``genzoo.runs.checkpoint.load_model``.)"""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta = cls.read_meta(directory)
        model_class = family_info(meta["family"]).model_class if meta["family"] in FAMILIES or cls is GenerativeModel else cls
        if cls is not GenerativeModel and not issubclass(model_class, cls):
            raise GenzooError(f"{directory} holds a {meta['family']} model, not a {cls.family}")
        model = model_class(model_class.config_class.from_dict(meta["config"]))
        try:
            state = load_file(str(Path(directory) / "model.safetensors"), device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as e:
            raise GenzooError(f"{directory}/model.safetensors is corrupt or missing ({e}); restore it or retrain") from e
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise GenzooError(f"{directory}: weights do not match config.json ({str(e)[:300]})") from e
        if (Path(directory) / "tokenizer.json").is_file():
            from genzoo.data.tokenizer import TextTokenizer

            model.tokenizer = TextTokenizer.load(directory)
        return model.to(map_location).eval()


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

    ``step(name, loss)`` back-propagates ``loss`` (outside autocast, scaled under fp16), averages
    gradients across processes, clips, and steps optimizer ``name``. Families never touch
    precision, scaling, clipping, accumulation or all-reduce themselves.

    Gradient accumulation: the Trainer runs ``training_step`` once per micro-batch
    (``begin_micro(i, n)``); ``step`` adds ``loss / n`` into the gradients and only the last
    micro-batch all-reduces, clips and steps, which equals one step on the whole batch. That holds
    only for one update per optimizer per step, so a family that steps an optimizer twice (a GAN's
    critic) is refused under accumulation.

    fp16: the gradient scaler steps every optimizer and updates its scale once per iteration
    (``end_iteration``), or before an optimizer steps a second time in one iteration, as
    ``torch.amp.GradScaler`` requires.
    """

    def __init__(self, optimizers: dict, grad_clip: float | None, scaler=None, world_size: int = 1, device_type: str = "cpu"):
        self.optimizers = optimizers
        self.grad_clip = grad_clip
        self.scaler = scaler
        self.world_size = world_size
        self.device_type = device_type
        self.grad_norms: dict[str, float] = {}
        self.micro, self.micro_count = 0, 1
        self._stepped: set[str] = set()  # optimizers stepped since the scaler's last update
        self._calls: dict[str, int] = {}  # step() calls per optimizer in this micro-batch

    def params(self, name: str) -> list[torch.nn.Parameter]:
        return [p for g in self.optimizers[name].param_groups for p in g["params"]]

    def begin_micro(self, index: int, count: int) -> None:
        self.micro, self.micro_count = index, count
        self._calls = {}

    def step(self, name: str, loss: torch.Tensor) -> None:
        if name not in self.optimizers:
            raise KeyError(f"no optimizer named {name!r}; this model has {sorted(self.optimizers)}")
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"loss for optimizer {name!r} is {loss.item()}")
        self._calls[name] = self._calls.get(name, 0) + 1
        if self.micro_count > 1 and (self._calls[name] > 1 or len(self._calls) > 1):
            raise GenzooError(
                "gradient accumulation needs one update of one optimizer per step; this family updates "
                f"{sorted(self._calls)} {sum(self._calls.values())} times per step (each update depends on the last), "
                "so micro-batches cannot add up to the large batch: use --grad-accum 1 and a smaller --batch-size"
            )
        opt = self.optimizers[name]
        params = self.params(name)
        if self.micro == 0:
            for p in params:
                p.grad = None
        if self.micro_count > 1:
            loss = loss / self.micro_count  # micro-batch means add up to the whole batch's mean
        # Backward outside autocast: it runs each op in the dtype autocast chose for its forward.
        with torch.autocast(self.device_type, enabled=False):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.micro < self.micro_count - 1:
            return  # accumulate; the last micro-batch steps
        if self.world_size > 1:
            _all_reduce_mean([p for p in params if p.grad is not None], self.world_size)
        if self.scaler is not None:
            if name in self._stepped:  # a second update of this optimizer: the scaler must update between
                self.scaler.update()
                self._stepped.clear()
            self.scaler.unscale_(opt)
        if self.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.grad_norms[name] = float(norm)
        if self.scaler is not None:
            self.scaler.step(opt)
            self._stepped.add(name)
        else:
            opt.step()

    def end_iteration(self) -> None:
        """After the whole step: the gradient scaler's one update for this iteration."""
        if self.scaler is not None and self._stepped:
            self.scaler.update()
            self._stepped.clear()


def decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups where only weight matrices and kernels (of Linear and conv layers)
    decay. Biases, norm gains, embeddings and every other parameter (a flow's scales, actnorm,
    an invertible 1x1 convolution) do not: decay pulls them towards 0, which means nothing for
    a bias and breaks a gain or an invertible map."""
    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    matrices = {id(m.weight) for m in module.modules()
                if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.weight is not None} - embeddings
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) in matrices], "weight_decay": weight_decay},
              {"params": [p for p in params if id(p) not in matrices], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def noise_from_batch(method):
    """Decorator for a model method taking a ``Batch`` first: dropout inside draws from ``batch.rng``."""

    @functools.wraps(method)
    def wrapper(self, batch, *args, **kwargs):
        with noise_source(batch.rng):
            return method(self, batch, *args, **kwargs)

    return wrapper


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

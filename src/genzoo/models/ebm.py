"""Energy-based models: persistent contrastive divergence with SGLD and a replay buffer, and JEM.

A network assigns each input an energy E(x); the model is p(x) proportional to
exp(-E(x)). Its log-likelihood gradient is

    d/dtheta log p(x) = -dE(x)/dtheta + E_{x- ~ p}[dE(x-)/dtheta],

so one step lowers the energy of data x+ and raises it at samples x- of the
model, minimising E(x+) - E(x-). The samples come from Langevin chains
(``genzoo.sampling.langevin``) that persist across steps in a replay buffer
(persistent contrastive divergence, Tieleman 2008; the buffer of Du & Mordatch
2019): each step continues SGLD from states the chains reached before, and a
small share (5%) restarts from noise so the buffer keeps exploring. A penalty
alpha * (E(x+)^2 + E(x-)^2) keeps the energy's magnitude from drifting, the
usual first sign of divergence.

JEM (Grathwohl et al. 2020) reads a classifier's logits f(x) as an energy:
E(x) = -logsumexp_y f(x)[y], and E(x, y) = -f(x)[y]. Training adds the cross
entropy of p(y|x) = softmax f(x) to the contrastive loss, so one network is
both a digits classifier and a generator (conditional samples follow E(x, y)).

The replay buffer is state that is not weights: it is saved per process in
the trainer state (``training_state``). It is laid out per position of the
global batch (``global batch x depth`` slots), and batch row j draws its
chain from position j's slots only, so a run on 2 processes equals 1 process
and a resumed run continues the very same chains. Every random number comes
from the batch's ``BatchRandom``.

Divergence: a step whose energies are not finite or exceed
``divergence_energy`` in magnitude raises ``FloatingPointError``; with the
Trainer's ``divergence_retries`` the run restores its last checkpoint and
goes on with a new seed (logged in metrics.jsonl), else it stops clearly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data.base import from_signed_unit, to_signed_unit
from genzoo.core.errors import GenzooError, unknown
from genzoo.family import FromData, register
from genzoo.models.base import LABEL_CONDITION, SAMPLE, Batch, GenerativeModel, ModelConfig, Updater, generator_device
from genzoo.sampling.langevin import langevin

# JEM needs labelled images: without labels its p(y|x) term has nothing to train and it would
# silently be the plain PCD model, so it refuses points (VARIANT_KINDS) and unlabelled images (FromData).
VARIANTS = {"pcd": {"num_classes": 0}, "jem": {"num_classes": FromData("num_classes")}}
VARIANT_KINDS = {"jem": ("image",)}
INITS = ("uniform", "gaussian")


@dataclass
class EBMConfig(ModelConfig):
    num_classes: int = 0  # > 0: JEM (energy from the logits of a classifier over this many classes)
    conv_widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # images: a 3x3 stem, then stride-2 stages
    hidden_widths: list[int] = field(default_factory=lambda: [128, 128, 128])  # points; the image head uses the last
    # Persistent contrastive divergence (defaults of JEM: buffer 10,000, 5% restarts, 20 SGLD steps).
    buffer_size: int = 10_000
    reinit_share: float = 0.05
    sgld_steps: int = 20
    sgld_step_size: float = 1.0
    sgld_noise: float | None = 0.01  # None: sqrt(2 * step size), true Langevin at temperature 1
    sgld_grad_clip: float | None = None  # cap on each chain's gradient norm per SGLD step
    energy_penalty: float = 0.1  # alpha of alpha * (E(x+)^2 + E(x-)^2)
    data_noise: float = 0.03  # Gaussian noise on the data (model space): smooths 17-level pixels into a density
    init_bound: float = 1.0  # chains start uniform on [-b, b]^D and stay there (images live in [-1, 1])
    # Divergence: energies beyond this magnitude (or not finite) stop the step (see the module doc).
    divergence_energy: float = 1000.0
    # sample(): long-run chains from noise, by default the training sampler run longer.
    sample_steps: int = 100


class _ConvEnergy(nn.Module):
    """(N, C, H, W) in [-1, 1] -> (N, outputs): a 3x3 stem, stride-2 stages, a small MLP head.
    SiLU everywhere: Langevin needs a smooth input gradient (ReLU's is piecewise constant)."""

    def __init__(self, shape: tuple[int, ...], widths: list[int], hidden: int, outputs: int):
        super().__init__()
        channels, h, w = shape
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
            h, w = (h + 1) // 2, (w + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(widths[-1] * h * w, hidden), nn.SiLU(), nn.Linear(hidden, outputs, bias=outputs > 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _mlp(dims: int, widths: list[int], outputs: int) -> nn.Sequential:
    # One output (an energy): no bias on it. A constant shift of E changes neither E(x+) - E(x-) nor
    # the Langevin gradients, so only the magnitude penalty would move it (tested: it never trained).
    # Several outputs (JEM's class logits) keep theirs: p(y|x) depends on per-class offsets.
    sizes = [dims, *widths]
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], outputs, bias=outputs > 1))


@register(
    "ebm",
    description="Energy-based model: persistent contrastive divergence with SGLD and a replay buffer; JEM (classifier + generator)",
    data_kinds=("image", "points"),
    variants=VARIANTS,
    variant_kinds=VARIANT_KINDS,
)
class EBM(GenerativeModel):
    config_class = EBMConfig
    capabilities = frozenset({SAMPLE, LABEL_CONDITION})
    likelihood = None  # exp(-E) is unnormalised
    loss_needs_grad = True  # the loss runs Langevin chains, which need input gradients

    def __init__(self, config: EBMConfig):
        super().__init__(config)
        self._bind_data_spec()
        if config.num_classes < 0:
            raise GenzooError(f"num_classes must be >= 0, got {config.num_classes}")
        if not 0.0 <= config.reinit_share <= 1.0:
            raise GenzooError(f"reinit_share must lie in [0, 1], got {config.reinit_share}")
        if config.buffer_size < 1 or config.sgld_steps < 1 or config.sgld_step_size <= 0 or (config.sgld_noise or 0) < 0:
            raise GenzooError("buffer_size and sgld_steps must be >= 1, sgld_step_size positive and sgld_noise >= 0")
        if not config.hidden_widths:
            raise GenzooError("hidden_widths must name at least one width, e.g. [128, 128]")
        outputs = max(config.num_classes, 1)
        if len(self.shape) == 3:
            if not config.conv_widths:
                raise GenzooError("conv_widths must name at least one width, e.g. [32, 64]")
            self.net = _ConvEnergy(self.shape, list(config.conv_widths), config.hidden_widths[-1], outputs)
        else:
            self.net = _mlp(self.dims, list(config.hidden_widths), outputs)
        # The replay buffer (not weights): (global batch, depth, *shape) chain states and which slots hold one.
        self._buffer: torch.Tensor | None = None
        self._filled: torch.Tensor | None = None

    # ---- configuration ---------------------------------------------------
    @classmethod
    def defaults_for(cls, data_spec: dict) -> EBMConfig:
        if data_spec.get("kind") == "image":
            return EBMConfig(data=data_spec)
        # toy2d lies in about [-4, 4]^2: chains start on a slightly larger box; points have no pixel
        # quantisation to smooth. True Langevin (noise sqrt(2 * 0.01)) and a light penalty: on 8gaussians
        # (2000 steps, lr 2e-3) this covered 8/8 modes with 97% high-quality samples in each of 3 seeds; a
        # cold sampler (step 0.1, noise 0.05) with penalty 0.1 reached 55% (benchmarks/README.md, section 17).
        return EBMConfig(data=data_spec, init_bound=4.5, data_noise=0.0, sgld_step_size=0.01, sgld_noise=None,
                         energy_penalty=0.01)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # The contrastive loss is not a quantity to select weights on (it hovers near 0 at any quality),
        # so validation only logs it. Digits: lr 5e-4 (JEM's 1e-4 is for runs of days): 5 CPU minutes of
        # JEM reach 87.7% test accuracy and FD_digits 151 (benchmarks/README.md, section 17).
        if data_spec.get("kind") == "image":
            return {"batch_size": 64, "lr": 5e-4, "warmup_steps": 100, "ema_decay": None, "val_every": 500,
                    "select_best": False, "grad_clip": 1.0, "divergence_retries": 3, "steps": 3000}
        return {"batch_size": 128, "lr": 2e-3, "warmup_steps": 50, "ema_decay": None, "val_every": 500,
                "select_best": False, "grad_clip": 1.0, "divergence_retries": 3, "steps": 3000}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        small = {"buffer_size": 64, "sgld_steps": 3, "sample_steps": 5}
        if data_spec.get("kind") == "image":
            return {**small, "conv_widths": [8, 16], "hidden_widths": [16]}
        return {**small, "hidden_widths": [16, 16]}

    # ---- energies ----------------------------------------------------------
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Data as the network sees it: pixel levels to the centres of their bins in [-1, 1]."""
        return to_signed_unit(x, self.levels) if self.levels else x

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        return from_signed_unit(x, self.levels) if self.levels else x

    def logits(self, x_model: torch.Tensor) -> torch.Tensor:
        """f(x) on model-space inputs: (N, num_classes) for JEM, (N, 1) otherwise."""
        return self.net(x_model)

    def energy(self, x_model: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) energies of model-space inputs: -logsumexp f(x), or -f(x)[y] given labels (JEM)."""
        logits = self.logits(x_model)
        if y is None:
            return -torch.logsumexp(logits, 1)
        return -logits.gather(1, y.view(-1, 1)).squeeze(1)

    def _bounds(self) -> tuple[float, float]:
        return (-self.config.init_bound, self.config.init_bound)

    def _init_chains(self, shape: tuple[int, ...], draw_uniform) -> torch.Tensor:
        b = self.config.init_bound
        return (2 * draw_uniform(shape) - 1) * b

    def _sgld(self, x0: torch.Tensor, noise_like, y: torch.Tensor | None = None, **options) -> torch.Tensor:
        cfg = self.config
        settings = dict(steps=cfg.sgld_steps, step_size=cfg.sgld_step_size, noise=cfg.sgld_noise, grad_clip=cfg.sgld_grad_clip)
        settings.update({k: v for k, v in options.items() if v is not None})  # None: the training sampler's
        return langevin(lambda x: self.energy(x, y), x0, bounds=self._bounds(), noise_like=noise_like, **settings)

    # ---- training ------------------------------------------------------------
    def _positives(self, batch: Batch) -> torch.Tensor:
        x = self.to_model_space(batch.x)
        return x + self.config.data_noise * batch.rng.randn_like(x) if self.config.data_noise else x

    def _contrastive_loss(self, batch: Batch, x_neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x_pos = self._positives(batch)
        logits_pos = self.logits(x_pos)
        e_pos = -torch.logsumexp(logits_pos, 1)
        e_neg = self.energy(x_neg.detach())
        self._check_divergence(e_pos, e_neg)
        loss = e_pos.mean() - e_neg.mean() + self.config.energy_penalty * (e_pos.square().mean() + e_neg.square().mean())
        metrics = {"e_pos": e_pos.mean().item(), "e_neg": e_neg.mean().item()}
        if self.config.num_classes:
            y = self._labels(batch.y, len(batch))
            ce = F.cross_entropy(logits_pos, y)
            loss = loss + ce
            metrics.update(ce=ce.item(), acc=(logits_pos.argmax(1) == y).float().mean().item())
        return loss, metrics

    def _check_divergence(self, *energies: torch.Tensor) -> None:
        worst = max(float(e.detach().abs().max()) for e in energies)
        if not worst <= self.config.divergence_energy:  # also catches NaN
            raise FloatingPointError(f"the EBM diverged: energy magnitude {worst:.3g} exceeds divergence_energy="
                                     f"{self.config.divergence_energy:g}")

    def loss(self, batch: Batch) -> torch.Tensor:
        """The contrastive objective with short-run chains from noise instead of the buffer (so that
        it is a function of the batch alone: validation and tests)."""
        rng = batch.rng
        x0 = self._init_chains((len(batch), *self.shape), lambda s: rng.rand(s[0], *s[1:]))
        x_neg = self._sgld(x0.to(self.device), rng.randn_like)
        return self._contrastive_loss(batch, x_neg)[0]

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        rng = batch.rng
        n = len(batch)
        columns = torch.arange(rng.offset, rng.offset + n, device=self.device)
        buffer, filled = self._replay_buffer(rng.global_batch)
        depth = buffer.shape[1]
        slot = rng.randint(depth, n).to(self.device)
        fresh = self._init_chains((n, *self.shape), lambda s: rng.rand(s[0], *s[1:])).to(self.device)
        restart = (rng.rand(n).to(self.device) < self.config.reinit_share) | ~filled[columns, slot]
        mask = restart.view(-1, *[1] * len(self.shape))
        x0 = torch.where(mask, fresh, buffer[columns, slot])
        x_neg = self._sgld(x0, rng.randn_like)
        loss, metrics = self._contrastive_loss(batch, x_neg)
        opt.step("main", loss)
        buffer[columns, slot] = x_neg.detach()
        filled[columns, slot] = True
        return {"loss": loss.item(), **metrics, "restarts": restart.float().mean().item()}

    def _replay_buffer(self, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The buffer for this global batch size, made empty on first use (an empty slot restarts
        from noise, so the first steps fill it as JEM's noise-initialised buffer would start)."""
        depth = max(1, -(-self.config.buffer_size // global_batch))
        if self._buffer is not None and self._buffer.shape[0] != global_batch:
            print(f"note: the EBM's replay buffer was built for a global batch of {self._buffer.shape[0]}, now "
                  f"{global_batch}: it restarts empty", file=sys.stderr)
            self._buffer = None
        if self._buffer is None:
            self._buffer = torch.zeros(global_batch, depth, *self.shape, device=self.device)
            self._filled = torch.zeros(global_batch, depth, dtype=torch.bool, device=self.device)
        return self._buffer, self._filled

    def training_state(self) -> dict:
        if self._buffer is None:
            return {}
        return {"replay_buffer": self._buffer.detach().cpu().clone(), "replay_filled": self._filled.cpu().clone()}

    def load_training_state(self, state: dict) -> None:
        if not state:
            self._buffer = self._filled = None
            return
        buffer, filled = state["replay_buffer"], state["replay_filled"]
        if tuple(buffer.shape[2:]) != self.shape or filled.shape != buffer.shape[:2]:
            raise ValueError(f"replay buffer of shape {tuple(buffer.shape)} does not fit data of shape {self.shape}")
        self._buffer, self._filled = buffer.to(self.device).clone(), filled.to(self.device).clone()

    def buffer_samples(self) -> torch.Tensor:
        """The filled slots of the replay buffer in data space (empty before training)."""
        if self._buffer is None:
            return torch.empty(0, *self.shape)
        return self.to_data_space(self._buffer[self._filled]).cpu()

    # ---- classification (JEM) ------------------------------------------------
    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """p(y|x) = softmax f(x) as (N, num_classes) probabilities; JEM only."""
        if not self.config.num_classes:
            raise GenzooError("this EBM is not a classifier; train the jem variant on labelled data")
        x = self._check_data(x)
        with self._eval_mode():
            return self.logits(self.to_model_space(x)).softmax(1)

    # ---- generation --------------------------------------------------------------
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None, steps: int | None = None,
               step_size: float | None = None, noise: float | None = None, grad_clip: float | None = None,
               init: str = "uniform") -> torch.Tensor:
        """``n`` examples from long-run SGLD chains started from noise (integer levels for images).

        ``steps`` (default the config's ``sample_steps``), ``step_size``, ``noise`` and ``grad_clip``
        default to the training sampler's; ``init`` is "uniform" on the data box or "gaussian"
        (N(0, (b/2)^2) clamped to the box). JEM given a condition samples E(x, y) = -f(x)[y].
        """
        if init not in INITS:
            raise unknown("init", init, INITS)
        if steps is not None and steps < 0:
            raise GenzooError(f"steps must be >= 0, got {steps}")
        y = self.check_condition(condition, n)
        device = generator_device(generator)
        shape = (n, *self.shape)
        if init == "uniform":
            x0 = self._init_chains(shape, lambda s: torch.rand(s, generator=generator, device=device))
        else:
            x0 = (torch.randn(shape, generator=generator, device=device) * self.config.init_bound / 2).clamp(*self._bounds())

        def noise_like(x):
            return torch.randn(x.shape, generator=generator, device=device).to(x)

        with self._eval_mode():
            x = self._sgld(x0.to(self.device), noise_like, y, steps=self.config.sample_steps if steps is None else steps,
                           step_size=step_size, noise=noise, grad_clip=grad_clip)
        return self.to_data_space(x.detach())

    def save_plots(self, directory, data) -> list:
        if self.data_spec.get("kind") != "points" or list(self.shape) != [2]:
            return []
        from genzoo.viz.ebm import save_energy_landscape

        return [save_energy_landscape(self, data, directory / "energy_landscape.png")]

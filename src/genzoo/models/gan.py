"""Generative adversarial networks: DCGAN, WGAN-GP and a conditional GAN with a projection discriminator.

A generator G maps noise z ~ N(0, I) (and a class, when conditional) to data;
a discriminator (critic) D scores how real an example looks. The two play a
game, each with its own optimizer; ``training_step`` runs ``critic_steps``
updates of D, then one of G. Losses (``loss``):

- ``nonsaturating`` (Goodfellow et al. 2014; DCGAN, Radford et al. 2016):
  L_D = softplus(-D(x)) + softplus(D(G(z))),  L_G = softplus(-D(G(z)));
- ``wasserstein`` (WGAN-GP, Gulrajani et al. 2017): L_D = D(G(z)) - D(x)
  + gp_weight * E[(|grad D(x_hat)| - 1)^2] at random interpolates x_hat of
  real and fake, plus a small drift term drift * D(x)^2 (Karras et al. 2018)
  that keeps the critic's values near 0; L_G = -D(G(z));
- ``hinge`` (Miyato & Koyama 2018): L_D = relu(1 - D(x)) + relu(1 + D(G(z))),
  L_G = -D(G(z)).

The conditional variant feeds a class embedding to G (concatenated with z)
and uses the projection discriminator D(x, y) = w . phi(x) + b + e_y . phi(x)
(Miyato & Koyama 2018), which scores the match between image and class by an
inner product rather than by concatenating the label.

No batch normalisation: its statistics couple the examples of a batch, which
would make two processes differ from one and samples depend on the batch they
are drawn in. The EMA generator is the Trainer's EMA (``ema_decay``): sampling
uses the averaged weights. ``diffaugment`` applies differentiable augmentation
(``genzoo.nn.diffaugment``) to every image D sees.

Discrete images are generated in [-1, 1] (tanh) and mapped to the level whose
bin holds the value; real images are dequantized uniformly within their bin
before D sees them (``dequantize_real``), so D cannot tell real from fake by
their values sitting on the 17 bin centres.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data.base import dequantize, from_signed_unit, to_signed_unit
from genzoo.core.errors import GenzooError, unknown
from genzoo.family import FromData, register
from genzoo.models.base import LABEL_CONDITION, SAMPLE, Batch, GenerativeModel, ModelConfig, Updater, decay_groups, generator_device
from genzoo.nn.diffaugment import diff_augment, parse_policy

LOSSES = ("nonsaturating", "wasserstein", "hinge")
VARIANTS = {
    "dcgan": {"loss": "nonsaturating", "critic_steps": 1, "gp_weight": 0.0, "num_classes": 0, "spectral_norm": True},
    "wgan-gp": {"loss": "wasserstein", "critic_steps": 5, "gp_weight": 10.0, "drift": 1e-3, "num_classes": 0,
                "spectral_norm": False},
    # Labelled images only (VARIANT_KINDS, and FromData refuses an unlabelled image folder): on
    # unlabelled data it would silently become an unconditional hinge GAN.
    "conditional": {"loss": "hinge", "critic_steps": 1, "gp_weight": 0.0, "num_classes": FromData("num_classes"),
                    "spectral_norm": True},
}
VARIANT_KINDS = {"conditional": ("image",)}


@dataclass
class GANConfig(ModelConfig):
    loss: str = "nonsaturating"  # one of LOSSES
    critic_steps: int = 1  # discriminator updates per generator update (WGAN-GP: 5)
    gp_weight: float = 0.0  # weight of the gradient penalty (WGAN-GP: 10)
    drift: float = 0.0  # weight of D(x)^2 in the wasserstein critic loss (wgan-gp: Karras et al.'s 0.001)
    latent_dim: int = 32
    num_classes: int = 0  # > 0: class-conditional generator and projection discriminator
    architecture: str = ""  # "conv" (images) or "mlp"; "" picks by data kind
    # conv widths: half of [128, 64] / [64, 128] runs a digits step in 0.4x the time (56 vs 131 ms per
    # step at batch 64 on a busy core), which buys more steps within a CPU budget
    gen_widths: list[int] = field(default_factory=lambda: [64, 32])  # conv: channels per stage, coarse to fine
    disc_widths: list[int] = field(default_factory=lambda: [32, 64])  # conv: channels per stride-2 stage
    feature_dim: int = 128  # phi(x): what the discriminator's head (and projection) reads
    mlp_width: int = 128  # mlp: hidden width of both networks
    mlp_depth: int = 3  # mlp: hidden layers of both networks
    # Spectral normalisation of every discriminator layer (Miyato et al. 2018): D is 1-Lipschitz per
    # layer, so it cannot overpower G. Without it (or batch norm) DCGAN collapsed on digits onto one
    # class by 1500 steps (FD_digits 2218, class coverage 0.1). WGAN-GP uses its penalty instead.
    spectral_norm: bool = True
    # D's scores are multiplied by this: with spectral norm, a bound on D's Lipschitz constant. At 1 a
    # spectrally normalised D cannot score a point 3 std (0.6) off a toy2d 8gaussians mode more than
    # about 0.6 logits below the mode itself, too little to push samples off the bridges between modes.
    lipschitz: float = 1.0
    diffaugment: str = ""  # e.g. "translation,cutout" (images only; see genzoo.nn.diffaugment)
    dequantize_real: bool = True  # discrete data: real images spread uniformly within their level's bin
    # PacGAN (Lin et al. 2018): D scores ``pack`` examples at once (points concatenated, image channels
    # stacked), so a batch of near-copies or of off-mode samples is easier to tell from real data.
    # Batches are cut to a multiple of ``pack``. Unconditional losses only (a pack mixes classes).
    pack: int = 1


class _MLP(nn.Sequential):
    def __init__(self, d_in: int, width: int, depth: int, d_out: int):
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(width if depth else d_in, d_out))
        super().__init__(*layers)


def _stage_sizes(h: int, w: int, stages: int) -> list[tuple[int, int]]:
    """Spatial size of the image and after each stride-2 stage (ceil halving, so odd sizes work)."""
    sizes = [(h, w)]
    for _ in range(stages):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


class ConvGenerator(nn.Module):
    """z -> Linear -> (w_0, h_s, w_s) -> [upsample, conv3x3, ReLU] per stage -> conv3x3 -> tanh."""

    def __init__(self, in_dim: int, shape: tuple[int, int, int], widths: list[int]):
        super().__init__()
        sizes = _stage_sizes(shape[1], shape[2], len(widths))
        self.start = (widths[0], *sizes[-1])
        self.fc = nn.Linear(in_dim, widths[0] * sizes[-1][0] * sizes[-1][1])
        layers: list[nn.Module] = []
        outs = [*widths[1:], widths[-1]]
        for c_in, c_out, size in zip(widths, outs, sizes[-2::-1]):
            layers += [nn.Upsample(size=size, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(outs[-1], shape[0], 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(F.relu(self.fc(h)).view(len(h), *self.start)))


class ConvFeatures(nn.Module):
    """Image -> phi(x): conv3x3, then a stride-2 conv per width, LeakyReLU(0.2), then a linear layer."""

    def __init__(self, shape: tuple[int, int, int], widths: list[int], feature_dim: int):
        super().__init__()
        chans = [widths[0], *widths]
        layers: list[nn.Module] = [nn.Conv2d(shape[0], chans[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        h, w = _conv_out(shape[1], len(widths)), _conv_out(shape[2], len(widths))
        self.fc = nn.Linear(widths[-1] * h * w, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.fc(self.net(x).flatten(1)), 0.2)


def _conv_out(size: int, stages: int) -> int:
    for _ in range(stages):  # kernel 4, stride 2, padding 1
        size = (size + 2 - 4) // 2 + 1
    return size


class Discriminator(nn.Module):
    """D(x, y) = w . phi(x) + b (+ e_y . phi(x): the projection term, when conditional)."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, bias: bool = True):
        super().__init__()
        self.features = features
        self.head = nn.Linear(feature_dim, 1, bias=bias)
        self.projection = nn.Embedding(num_classes, feature_dim) if num_classes else None
        if self.projection is not None:
            nn.init.normal_(self.projection.weight, std=feature_dim**-0.5)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)
        out = self.head(phi).squeeze(1)
        if self.projection is not None:
            out = out + (self.projection(y) * phi).sum(1)
        return out


def gradient_penalty(critic, x_hat: torch.Tensor, *args, pack: int = 1) -> torch.Tensor:
    """E[(|grad_x critic(x_hat)| - 1)^2] over the batch (Gulrajani et al. 2017), differentiable in
    the critic's parameters (create_graph), each score's gradient norm taken over all the values it
    reads (one example, or ``pack`` consecutive examples when the critic packs them)."""
    x_hat = x_hat.detach().requires_grad_(True)
    scores = critic(x_hat, *args)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.reshape(len(x_hat) // pack, -1).norm(2, dim=1) - 1).square().mean()


@register(
    "gan",
    description="GANs: DCGAN, WGAN-GP, conditional GAN (projection discriminator); EMA generator, DiffAugment",
    data_kinds=("image", "points"),
    variants=VARIANTS,
    variant_kinds=VARIANT_KINDS,
)
class GAN(GenerativeModel):
    config_class = GANConfig
    capabilities = frozenset({SAMPLE, LABEL_CONDITION})
    likelihood = None

    def __init__(self, config: GANConfig):
        super().__init__(config)
        self._bind_data_spec()
        self._validate(config)
        c = config
        self.augment = parse_policy(c.diffaugment)
        arch = c.architecture or ("conv" if len(self.shape) == 3 else "mlp")
        self.architecture = arch
        label_dim = c.latent_dim if c.num_classes else 0
        self.label_embedding = nn.Embedding(c.num_classes, label_dim) if c.num_classes else None
        if arch == "conv":
            self.generator = ConvGenerator(c.latent_dim + label_dim, self.shape, list(c.gen_widths))
            packed_shape = (self.shape[0] * c.pack, *self.shape[1:])
            features = ConvFeatures(packed_shape, list(c.disc_widths), c.feature_dim)
            feature_dim = c.feature_dim
        else:
            self.generator = _MLP(c.latent_dim + label_dim, c.mlp_width, c.mlp_depth, self.dims)
            features = nn.Sequential(nn.Flatten(), _MLP(self.dims * c.pack, c.mlp_width, c.mlp_depth - 1, c.mlp_width), nn.LeakyReLU(0.2))
            feature_dim = c.mlp_width
        # A constant added to every score cancels between the real and fake terms of the wasserstein
        # loss (and of the hinge loss while every margin is active): such a bias gets no gradient.
        self.discriminator = Discriminator(features, feature_dim, c.num_classes, bias=c.loss == "nonsaturating")
        if c.spectral_norm:
            for module in list(self.discriminator.modules()):
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    nn.utils.parametrizations.spectral_norm(module)

    def _validate(self, c: GANConfig) -> None:
        if c.loss not in LOSSES:
            raise unknown("loss", c.loss, LOSSES)
        if c.architecture not in ("", "conv", "mlp"):
            raise unknown("architecture", c.architecture, ("conv", "mlp"))
        if c.architecture == "conv" and len(self.shape) != 3:
            raise GenzooError(f"architecture 'conv' needs (C, H, W) images, got shape {self.shape}; use architecture='mlp'")
        if c.critic_steps < 1 or c.latent_dim < 1 or c.num_classes < 0 or c.gp_weight < 0 or c.drift < 0:
            raise GenzooError("critic_steps and latent_dim must be >= 1; num_classes, gp_weight and drift >= 0")
        if c.mlp_depth < 1 or not c.gen_widths or not c.disc_widths:
            raise GenzooError("mlp_depth must be >= 1 and gen_widths / disc_widths name at least one stage")
        if c.lipschitz <= 0:
            raise GenzooError(f"lipschitz must be > 0 (a scale of D's scores), got {c.lipschitz}")
        if c.pack < 1:
            raise GenzooError(f"pack must be >= 1 (examples the discriminator scores together), got {c.pack}")
        if c.pack > 1 and c.num_classes:
            raise GenzooError("pack > 1 needs an unconditional variant (a pack would mix classes); use pack=1")
        if c.diffaugment and len(self.shape) != 3:
            raise GenzooError("diffaugment works on images only; leave it empty ('') for points")

    # ---- configuration ---------------------------------------------------
    @classmethod
    def defaults_for(cls, data_spec: dict) -> GANConfig:
        if data_spec.get("kind") == "image":
            return GANConfig(data=data_spec, architecture="conv")
        # Points (toy2d): small MLPs and a low-dimensional latent.
        return GANConfig(data=data_spec, architecture="mlp", latent_dim=8)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # Adam with beta1 = 0.5 (Radford et al. 2016; Gulrajani et al. use 0.5-0 too): momentum lags a
        # moving target in a game. Constant LR with the EMA generator; no selection on validation
        # (a GAN has no single loss to select on); a sample grid every 500 steps shows training.
        common = {"betas": (0.5, 0.999), "schedule": "constant", "warmup_steps": 0, "ema_decay": 0.999,
                  "grad_clip": None, "val_every": 0, "sample_every": 500, "weight_decay": 0.0}
        if data_spec.get("kind") == "image":
            return {**common, "batch_size": 64, "lr": 2e-4, "steps": 3000}
        # Points: measured on toy2d 8gaussians (PacGAN protocol, benchmarks/README.md section 16b), the
        # share of samples within 3 std of a mode rose with lr and length: lr 1e-4 x 5000 steps 76-83%,
        # 5e-4 x 5000 92.3%, x 10000 94.6% (seed 0), x 15000 95.2 / 95.0 / 94.6%, x 20000 95.5 / 96.6 / 96.2%
        # (seeds 0-2: the goal of >= 95% in every seed first met); a cosine decay (64-70%), packing (56-74%)
        # and a larger Lipschitz bound (78.8%) did not help. WGAN-GP: 92.2 / 87.7 / 91.8% at 15000.
        return {**common, "batch_size": 256, "lr": 5e-4, "steps": 20000}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        if data_spec.get("kind") == "image":
            return {"gen_widths": [8, 8], "disc_widths": [8, 8], "feature_dim": 16, "latent_dim": 8}
        return {"mlp_width": 16, "mlp_depth": 2, "latent_dim": 4}

    def configure_optimizers(self, lr: float, weight_decay: float, betas=(0.5, 0.999)) -> dict[str, torch.optim.Optimizer]:
        gen = [self.generator] + ([self.label_embedding] if self.label_embedding is not None else [])
        return {
            "discriminator": torch.optim.AdamW(decay_groups(self.discriminator, weight_decay), lr=lr, betas=betas),
            "generator": torch.optim.AdamW(decay_groups(nn.ModuleList(gen), weight_decay), lr=lr, betas=betas),
        }

    # ---- the two players ---------------------------------------------------
    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z, y) in model space: [-1, 1] images, or points."""
        if self.label_embedding is not None:
            z = torch.cat([z, self.label_embedding(y)], 1)
        return self.generator(z).view(len(z), *self.shape)

    def critic(self, x: torch.Tensor, y: torch.Tensor | None = None, uniform=None) -> torch.Tensor:
        """D(T(x), y): one score per example, or per pack of ``pack`` consecutive examples
        (T = DiffAugment when on and ``uniform`` is given)."""
        if self.augment and uniform is not None:
            x = diff_augment(x, self.augment, uniform)
        m = self.config.pack
        if m > 1:  # (n, C, H, W) -> (n / m, m C, H, W); points (n, D) -> (n / m, m D)
            x = x.reshape(len(x) // m, m * x.shape[1], *x.shape[2:])
        scores = self.discriminator(x, y if self.config.num_classes else None)
        return scores * self.config.lipschitz if self.config.lipschitz != 1.0 else scores

    def _real(self, batch: Batch) -> torch.Tensor:
        x = batch.x
        if not self.levels:
            return x
        if self.config.dequantize_real:
            return dequantize(x, self.levels, batch.rng.rand_like(x))
        return to_signed_unit(x, self.levels)

    def _d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        loss = self.config.loss
        if loss == "nonsaturating":
            return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if loss == "hinge":
            return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        return d_fake.mean() - d_real.mean() + self.config.drift * d_real.square().mean()

    def _g_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-d_fake).mean() if self.config.loss == "nonsaturating" else -d_fake.mean()

    @contextmanager
    def _frozen_discriminator(self):
        """The generator's update needs gradients through D, not into D's weights: skip them."""
        params = list(self.discriminator.parameters())
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, f in zip(params, flags):
                p.requires_grad_(f)

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        c = self.config
        n = len(batch) - len(batch) % c.pack  # whole packs only
        if n == 0:
            raise GenzooError(f"a batch of {len(batch)} holds no whole pack of {c.pack}; use batch_size >= pack")
        y = self._labels(batch.y, len(batch))  # the real batch's labels, reused for the fakes: the data's class mix
        real = self._real(batch)[:n]
        y = None if y is None else y[:n]
        uniform = batch.rng.rand  # all noise from the batch's stream: splits over processes, resumes exactly
        for _ in range(c.critic_steps):
            with torch.no_grad():
                fake = self.generate(batch.rng.randn(n, c.latent_dim).to(real), y)
            d_real, d_fake = self.critic(real, y, uniform), self.critic(fake, y, uniform)
            loss_d = self._d_loss(d_real, d_fake)
            gp = None
            if c.gp_weight:
                eps = batch.rng.rand(n, *[1] * len(self.shape)).to(real)
                x_hat = eps * real + (1 - eps) * fake
                gp = gradient_penalty(lambda v, yy: self.critic(v, yy, uniform), x_hat, y, pack=c.pack)
                loss_d = loss_d + c.gp_weight * gp
            opt.step("discriminator", loss_d)
        with self._frozen_discriminator():
            fake = self.generate(batch.rng.randn(n, c.latent_dim).to(real), y)
            loss_g = self._g_loss(self.critic(fake, y, uniform))
        opt.step("generator", loss_g)
        metrics = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        if gp is not None:
            metrics["gp"] = gp.item()
        return metrics

    # ---- generation -------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None, batch_size: int = 1024) -> torch.Tensor:
        """``n`` examples from the generator (integer levels for discrete images). A conditional
        model given no condition draws its classes uniformly."""
        if n < 0 or batch_size < 1:
            raise GenzooError("n must be >= 0 and batch_size >= 1")
        y = self.check_condition(condition, n)
        gen_device = generator_device(generator)
        if self.config.num_classes and y is None:
            y = torch.randint(self.config.num_classes, (n,), generator=generator, device=gen_device).to(self.device)
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=gen_device).to(self.device)
        out = []
        with self._eval_mode():
            for s in range(0, n, batch_size):
                x = self.generate(z[s : s + batch_size], None if y is None else y[s : s + batch_size])
                out.append(from_signed_unit(x, self.levels) if self.levels else x)
        return torch.cat(out) if out else torch.empty(0, *self.shape, device=self.device)

    def save_plots(self, directory: Path, data) -> list[Path]:
        """Both players' losses on one figure, and the sample grids written during training in one strip."""
        from genzoo.viz.training import save_player_curves, save_progress_strip

        directory = Path(directory)
        written = [save_player_curves(directory / "metrics.jsonl", directory / "players.png"),
                   save_progress_strip(directory / "samples", directory / "samples_over_training.png")]
        return [p for p in written if p is not None]

"""CycleGAN (Zhu et al., 2017): unpaired translation between two image domains A and B.

Two generators, G_AB: A -> B and G_BA: B -> A, and two discriminators, D_A and
D_B, each judging real against translated images of its own domain. With
images scaled to [-1, 1], the generators minimize (least-squares GAN, as in the
paper)

    L_G = (D_B(G_AB(a)) - 1)^2 + (D_A(G_BA(b)) - 1)^2                      adversarial
        + lambda_cycle * (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1)     cycle consistency
        + lambda_identity * lambda_cycle * (|G_AB(b) - b|_1 + |G_BA(a) - a|_1)   identity (optional)

and the discriminators minimize 1/2 (D(real) - 1)^2 + 1/2 D(fake)^2 per domain.
The cycle term is what keeps a translated digit the same digit: a map that
changed the class could not be inverted by the other generator.

Data: kind "domains" (``genzoo.data.domains``), e.g. ``digits2typed``.
``translate(x, "A")`` maps A images to B; ``translate(x, "B")`` maps B to A.
The paper's pool of 50 past fakes for the discriminators is left out: it is
per-process state whose draws would make 2 processes differ from 1.

Variant ``semantic`` (not CycleGAN proper: it uses labels, so it is supervised
in class though still unpaired) adds a semantic-consistency term in the spirit
of CyCADA (Hoffman et al. 2018): two classifiers C_A, C_B learn each domain's
labels on real images (trained with the discriminators), and the generators
also minimize lambda_class * (CE(C_B(G_AB(a)), y_a) + CE(C_A(G_BA(b)), y_b)),
so that a translated image must read as its input's class in the other domain.
The default variant never reads labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data.base import from_signed_unit, to_signed_unit
from genzoo.data.domains import DOMAINS, check_side
from genzoo.core.errors import GenzooError
from genzoo.family import register
from genzoo.models.base import TRANSLATE, Batch, GenerativeModel, ModelConfig, Updater, decay_groups


@dataclass
class CycleGANConfig(ModelConfig):
    width: int = 32  # generator channels
    blocks: int = 3  # residual blocks in each generator
    disc_width: int = 32  # discriminator channels
    lambda_cycle: float = 10.0  # the paper's weight of the cycle term
    lambda_identity: float = 0.5  # identity term, as a fraction of lambda_cycle (the paper: 0.5; 0 turns it off)
    lambda_class: float = 0.0  # > 0 (variant semantic): class-preserving term; needs labels in both domains
    num_classes: int = 0  # classes of the labels the semantic term reads (digits2typed: 10)


# "semantic" reads labels; digits2typed has 10 digits (other labelled domains: --set num_classes=K).
VARIANTS = {"default": {}, "semantic": {"lambda_class": 1.0, "num_classes": 10}}


class _ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(width, affine=True), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(width, affine=True),
        )  # fmt: skip

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


def _downsamplings(size: int) -> int:
    """Stride-2 stages so that the residual blocks work at about 8x8 (none for 8x8 digits, 2 for 32x32 or more)."""
    return max(0, min(2, int(math.log2(max(size, 1) / 8))))


class ResnetGenerator(nn.Module):
    """The paper's generator scaled down: stem, stride-2 downs, residual blocks, ups, tanh output.
    Instance norm (per image) rather than batch norm, as in the paper; it also keeps each example
    independent of the rest of its batch, so a batch split over processes trains identically."""

    def __init__(self, channels: int, width: int, blocks: int, downs: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1, padding_mode="reflect"),
                                   nn.InstanceNorm2d(width, affine=True), nn.ReLU()]
        w = width
        for _ in range(downs):
            layers += [nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * w, affine=True), nn.ReLU()]
            w *= 2
        layers += [_ResidualBlock(w) for _ in range(blocks)]
        for _ in range(downs):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w // 2, 3, padding=1),
                       nn.InstanceNorm2d(w // 2, affine=True), nn.ReLU()]
            w //= 2
        layers += [nn.Conv2d(w, channels, 3, padding=1, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """A PatchGAN: one score per overlapping patch (about 7x7 pixels at 8x8), no normalization."""

    def __init__(self, channels: int, width: int, downs: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        w = width
        for _ in range(downs + 1):
            layers += [nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            w *= 2
        layers.append(nn.Conv2d(w, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DomainClassifier(nn.Sequential):
    """Reads the class of an image of one domain (variant semantic): conv, stride-2 convs, linear."""

    def __init__(self, channels: int, width: int, downs: int, num_classes: int, size: tuple[int, int]):
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        w, (h, ww) = width, size
        for _ in range(downs + 1):
            layers += [nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            w, h, ww = 2 * w, (h + 1) // 2, (ww + 1) // 2
        super().__init__(*layers, nn.Flatten(), nn.Linear(w * h * ww, num_classes))


def lsgan_generator_loss(scores: torch.Tensor) -> torch.Tensor:
    return ((scores - 1) ** 2).mean()


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((real_scores - 1) ** 2).mean() + 0.5 * (fake_scores**2).mean()


@register(
    "cyclegan",
    description="CycleGAN: unpaired translation between two image domains (two generators, two PatchGAN critics, cycle + identity losses)",
    data_kinds=("domains",),
    variants=VARIANTS,
)
class CycleGAN(GenerativeModel):
    config_class = CycleGANConfig
    capabilities = frozenset({TRANSLATE})

    def __init__(self, config: CycleGANConfig):
        super().__init__(config)
        spec = config.data
        shape = spec.get("shape") or []
        if spec.get("kind") != "domains" or len(shape) != 4 or shape[0] != 2:
            raise GenzooError("CycleGAN needs two-domain image data (kind 'domains'), e.g. --data digits2typed "
                              "or --data domains:ROOT with folders ROOT/A and ROOT/B")
        self.image_shape = tuple(shape[1:])  # (C, H, W) of each domain
        self.levels = spec.get("levels")
        channels, height, width = self.image_shape
        downs = _downsamplings(min(height, width))
        self.g_ab = ResnetGenerator(channels, config.width, config.blocks, downs)
        self.g_ba = ResnetGenerator(channels, config.width, config.blocks, downs)
        self.d_a = PatchDiscriminator(channels, config.disc_width, downs)
        self.d_b = PatchDiscriminator(channels, config.disc_width, downs)
        if config.lambda_class < 0 or config.num_classes < 0 or (config.lambda_class > 0) != (config.num_classes > 0):
            raise GenzooError("the class-preserving term needs lambda_class > 0 and num_classes > 0 together "
                              f"(got {config.lambda_class} and {config.num_classes}); the default variant sets both to 0")
        self.c_a = self.c_b = None
        if config.lambda_class:
            self.c_a = DomainClassifier(channels, config.disc_width, downs, config.num_classes, (height, width))
            self.c_b = DomainClassifier(channels, config.disc_width, downs, config.num_classes, (height, width))

    # ---- configuration ---------------------------------------------------
    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # The paper's Adam settings (lr 2e-4, beta1 0.5) and no weight decay; a constant LR, since
        # adversarial losses give no validation loss to schedule on.
        return {"batch_size": 64, "lr": 2e-4, "betas": (0.5, 0.999), "weight_decay": 0.0, "grad_clip": None,
                "warmup_steps": 0, "schedule": "constant", "ema_decay": None, "steps": 3000, "val_every": 0}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"width": 8, "blocks": 1, "disc_width": 8}

    def configure_optimizers(self, lr: float, weight_decay: float, betas=(0.5, 0.999)) -> dict[str, torch.optim.Optimizer]:
        generators = nn.ModuleList([self.g_ab, self.g_ba])
        critics = nn.ModuleList([self.d_a, self.d_b] + ([self.c_a, self.c_b] if self.c_a is not None else []))
        return {"generators": torch.optim.AdamW(decay_groups(generators, weight_decay), lr=lr, betas=betas),
                "discriminators": torch.optim.AdamW(decay_groups(critics, weight_decay), lr=lr, betas=betas)}

    # ---- scaling -----------------------------------------------------------
    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Levels -> [-1, 1] (bin centres); continuous images pass as they are."""
        return to_signed_unit(x, self.levels) if self.levels else x

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        return from_signed_unit(x, self.levels) if self.levels else x

    def generator(self, source: str) -> nn.Module:
        """The generator that maps images of domain ``source`` into the other domain."""
        return self.g_ab if check_side(source) == "A" else self.g_ba

    # ---- the losses --------------------------------------------------------
    def cycle_terms(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Translations and the generators' loss terms for a batch of A and B images in [-1, 1]."""
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        cycle = F.l1_loss(self.g_ba(fake_b), a) + F.l1_loss(self.g_ab(fake_a), b)
        terms = {"fake_a": fake_a, "fake_b": fake_b, "cycle": cycle}
        if self.config.lambda_identity:
            terms["identity"] = F.l1_loss(self.g_ab(b), b) + F.l1_loss(self.g_ba(a), a)
        return terms

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        cfg = self.config
        a, b = self.to_unit(batch.x[:, 0]), self.to_unit(batch.x[:, 1])
        terms = self.cycle_terms(a, b)
        adversarial = lsgan_generator_loss(self.d_b(terms["fake_b"])) + lsgan_generator_loss(self.d_a(terms["fake_a"]))
        loss_g = adversarial + cfg.lambda_cycle * terms["cycle"]
        if "identity" in terms:
            loss_g = loss_g + cfg.lambda_identity * cfg.lambda_cycle * terms["identity"]
        if self.c_a is not None:
            y_a, y_b = self._domain_labels(batch)
            class_term = F.cross_entropy(self.c_b(terms["fake_b"]), y_a) + F.cross_entropy(self.c_a(terms["fake_a"]), y_b)
            loss_g = loss_g + cfg.lambda_class * class_term
        opt.step("generators", loss_g)
        # The critics see the fakes of the generators before this step's update, as in the paper.
        loss_d = (lsgan_discriminator_loss(self.d_a(a), self.d_a(terms["fake_a"].detach()))
                  + lsgan_discriminator_loss(self.d_b(b), self.d_b(terms["fake_b"].detach())))
        if self.c_a is not None:  # the classifiers learn each domain's labels on real images only
            classify = F.cross_entropy(self.c_a(a), y_a) + F.cross_entropy(self.c_b(b), y_b)
            loss_d = loss_d + classify
        opt.step("discriminators", loss_d)
        metrics = {"loss_g": loss_g.item(), "loss_d": loss_d.item(), "adversarial": adversarial.item(), "cycle": terms["cycle"].item()}
        if self.c_a is not None:
            metrics.update(class_term=class_term.item(), classify=classify.item())
        if "identity" in terms:
            metrics["identity"] = terms["identity"].item()
        return metrics

    def _domain_labels(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        y = batch.y
        if y is None or y.ndim != 2 or y.shape[1] != 2:
            raise GenzooError("the semantic variant needs labels in both domains (e.g. digits2typed); "
                              "this data has none: use the default variant")
        if y.min() < 0 or y.max() >= self.config.num_classes:
            raise GenzooError(f"labels run {int(y.min())}..{int(y.max())}; set num_classes to cover them")
        return y[:, 0].long(), y[:, 1].long()

    # ---- translation -------------------------------------------------------
    def _check_images(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if tuple(x.shape[1:]) != self.image_shape or x.ndim != 4:
            raise GenzooError(f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        if self.levels and ((x != x.round()) | (x < 0) | (x > self.levels - 1)).any():
            raise GenzooError(f"this model expects integer levels 0..{self.levels - 1}; got other values")
        return x

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "A", *, batch_size: int = 512) -> torch.Tensor:
        """Images of domain ``direction`` ("A" or "B") mapped into the other domain, as levels where discrete."""
        generator = self.generator(direction)
        x = self._check_images(x)
        with self._eval_mode():
            out = [self.from_unit(generator(self.to_unit(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else x.clone()

    @torch.no_grad()
    def cycle_error(self, x: torch.Tensor, direction: str = "A") -> torch.Tensor:
        """Per image: mean absolute difference, in levels (or data units), between x and its round
        trip through the other domain and back."""
        side = check_side(direction)
        other = DOMAINS[1 - DOMAINS.index(side)]
        back = self.translate(self.translate(x, side), other)
        return (back - self._check_images(x)).abs().flatten(1).mean(1)

    def save_plots(self, directory: Path, data) -> list[Path]:
        """Before / after / round-trip grids of each direction on the test split (else the data given)."""
        from genzoo.viz.cyclegan import save_translation_grid, test_split_of

        data = test_split_of(data)
        return [save_translation_grid(self, data, side, Path(directory) / f"translate_{side}.png") for side in DOMAINS]

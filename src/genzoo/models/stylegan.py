"""A small StyleGAN (Karras et al. 2019, 2020: StyleGAN2's modulated convolutions) for small images.

A mapping network turns z ~ N(0, I) into an intermediate latent w; the
synthesis network starts from a learned constant and, layer by layer, is
steered by w through *modulated* convolutions: the kernel's input channels are
scaled by a per-image style s = A(w), then *demodulated* so that each output
channel's kernel has unit norm again,

    w'_{o,i,k} = s_i * w_{o,i,k},     w''_{o,i,k} = w'_{o,i,k} / sqrt(sum_{i,k} w'_{o,i,k}^2 + eps),

which keeps activations at unit scale without instance norm (StyleGAN2's fix
for its "water droplet" artefacts). Per-layer noise with a learned strength
adds stochastic detail; a skip generator sums one modulated 1x1 "to-image"
output per resolution.

* Style mixing: in training, 90% of images take w from one z for the first
  layers and from a second z after a random crossover, so that layers do not
  learn to depend on each other's styles; ``save_plots`` writes a grid.
* Truncation: ``sample(truncation=psi)`` uses w_avg + psi (w - w_avg), trading
  variety for typicality; psi = 0 gives the average image. w_avg is the mean of
  the mapping over a fixed set of z (computed on demand, so it is a function of
  the weights and never per-process training state).

Discriminator: a small residual conv net; loss: the non-saturating logistic
loss with an R1 penalty on real images (gamma / 2 * |grad D(x)|^2).
Left out for this size: path-length regularization, lazy regularization,
minibatch standard deviation (a statistic across the batch would make a batch
split over processes train differently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data.base import from_signed_unit, to_signed_unit
from genzoo.core.errors import GenzooError, unknown
from genzoo.family import register
from genzoo.models.base import SAMPLE, Batch, GenerativeModel, ModelConfig, Updater, decay_groups, generator_device

NOISE_MODES = ("random", "const", "none")
W_AVG_SAMPLES = 4096  # z's averaged for w_avg: its standard error is ~1.5% of w's spread
W_AVG_SEED = 0


@dataclass
class StyleGANConfig(ModelConfig):
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01  # StyleGAN's: the mapping learns 100x slower, which keeps w stable
    channels: int = 64  # synthesis and discriminator width
    mixing_prob: float = 0.9  # share of training images made with two styles
    r1_gamma: float = 0.1  # R1 weight; measured scale for 8x8 images in [-1, 1] (StyleGAN2 uses 0.01-10 by size)


# ---- layers with equalized learning rate ---------------------------------


class EqualLinear(nn.Module):
    """Linear layer whose weights are N(0, 1) / lr_mul, scaled at run time by lr_mul / sqrt(fan_in), so
    that Adam's steps are the same size for every layer (StyleGAN's equalized learning rate)."""

    def __init__(self, fan_in: int, fan_out: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((fan_out,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(fan_in), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activate else out


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Per-image kernels (N, out, in, k, k): ``weight`` (out, in, k, k) with input channels scaled by
    ``styles`` (N, in), then (if ``demodulate``) each output channel rescaled to unit L2 norm."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]
    if demodulate:
        w = w * torch.rsqrt(w.pow(2).sum((2, 3, 4), keepdim=True) + eps)
    return w


class ModulatedConv(nn.Module):
    """3x3 (or 1x1) convolution modulated by a style, optionally upsampling 2x first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int, demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.scale = 1 / math.sqrt(c_in * kernel * kernel)
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2
        self.grouped = False  # True: per-image kernels in a grouped conv (the textbook form; tests compare the two)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        styles = self.affine(w)
        weight = self.weight * self.scale
        if self.grouped:
            return self._grouped(x, modulated_weight(weight, styles, self.demodulate))
        # The same maths as per-image kernels, with one shared kernel: scale the input channels by s,
        # convolve, then scale each output channel by its demodulation factor
        # d[n, o] = 1 / sqrt(sum_i s[n, i]^2 * sum_k weight[o, i, k]^2 + eps). Measured 3x faster on CPU
        # than the grouped convolution at 8x8 (StyleGAN2's "fused_modconv=False" path).
        out = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            d = torch.rsqrt(styles.pow(2) @ weight.pow(2).sum((2, 3)).T + 1e-8)
            out = out * d[:, :, None, None]
        return out

    def _grouped(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """One grouped convolution applying each image's own kernels (the batch becomes groups)."""
        n, c, h, wd = x.shape
        out = F.conv2d(x.reshape(1, n * c, h, wd), kernels.reshape(-1, c, *kernels.shape[3:]), padding=self.padding, groups=n)
        return out.view(n, -1, h, wd)


class StyledLayer(nn.Module):
    """Modulated conv + scaled noise + bias + leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, size: tuple[int, int], upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv(c_in, c_out, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("const_noise", torch.randn(1, 1, *size))  # noise_mode="const": fixed per layer
        self.size = size

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x, w)
        if noise is not None:
            x = x + self.noise_strength * noise
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class ToImage(nn.Module):
    """Modulated 1x1 conv to the image channels, not demodulated (it sets the output's scale)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(c_in, c_out, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


def _upsamplings(height: int, width: int) -> int:
    """Doublings from the constant input (about 4x4) to the image size; refuses sizes that do not divide."""
    ups = max(0, int(math.log2(min(height, width) / 4)))
    if height % 2**ups or width % 2**ups:
        raise GenzooError(f"StyleGAN doubles its resolution from a small constant: image sides must be divisible by "
                          f"{2**ups} (got {height}x{width}); crop or resize the images")
    return ups


class Synthesis(nn.Module):
    """Constant -> [styled layer] at the first size, then per doubling [upsampling styled layer, styled layer];
    a to-image output per size, summed up the resolutions (StyleGAN2's skip generator)."""

    def __init__(self, channels_out: int, height: int, width: int, w_dim: int, c: int):
        super().__init__()
        ups = _upsamplings(height, width)
        size = (height // 2**ups, width // 2**ups)
        self.const = nn.Parameter(torch.randn(1, c, *size))
        self.layers = nn.ModuleList([StyledLayer(c, c, w_dim, size)])
        self.to_images = nn.ModuleList([ToImage(c, channels_out, w_dim)])
        self.order: list[tuple[str, int]] = [("layer", 0), ("image", 0)]  # which w index feeds which module
        for _ in range(ups):
            size = (size[0] * 2, size[1] * 2)
            self.layers.extend([StyledLayer(c, c, w_dim, size, upsample=True), StyledLayer(c, c, w_dim, size)])
            self.to_images.append(ToImage(c, channels_out, w_dim))
            n = len(self.layers)
            self.order += [("layer", n - 2), ("layer", n - 1), ("image", len(self.to_images) - 1)]

    @property
    def num_ws(self) -> int:
        return len(self.order)

    def forward(self, ws: torch.Tensor, noise_fn) -> torch.Tensor:
        """``ws`` (N, num_ws, w_dim); ``noise_fn(layer)`` gives that layer's (N, 1, H, W) noise or None."""
        x = self.const.expand(len(ws), -1, -1, -1)
        image = None
        for i, (kind, j) in enumerate(self.order):
            if kind == "layer":
                x = self.layers[j](x, ws[:, i], noise_fn(self.layers[j]))
            else:
                out = self.to_images[j](x, ws[:, i])
                image = out if image is None else F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False) + out
        return image


class Discriminator(nn.Module):
    """1x1 stem, then residual stride-2 blocks down to about 4x4, then two linear layers to one score."""

    def __init__(self, channels_in: int, height: int, width: int, c: int):
        super().__init__()
        ups = _upsamplings(height, width)
        self.stem = nn.Conv2d(channels_in, c, 1)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"conv": nn.Conv2d(c, c, 3, padding=1), "down": nn.Conv2d(c, c, 3, stride=2, padding=1),
                           "skip": nn.Conv2d(c, c, 1, stride=2, bias=False)})
            for _ in range(ups)
        )
        final = (height // 2**ups) * (width // 2**ups) * c
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(final, c), nn.LeakyReLU(0.2), nn.Linear(c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.stem(x), 0.2)
        for b in self.blocks:
            y = b["down"](F.leaky_relu(b["conv"](h), 0.2))
            h = (F.leaky_relu(y, 0.2) + b["skip"](h)) / math.sqrt(2)
        return self.head(h).squeeze(1)


@register("stylegan", description="small StyleGAN: mapping net, modulated/demodulated convs, per-layer noise, "
          "style mixing, truncation trick; R1-regularized logistic GAN", data_kinds=("image",))
class StyleGAN(GenerativeModel):
    config_class = StyleGANConfig
    capabilities = frozenset({SAMPLE})

    def __init__(self, config: StyleGANConfig):
        super().__init__(config)
        self._bind_data_spec()
        if len(self.shape) != 3:
            raise GenzooError(f"StyleGAN generates images (C, H, W); this data has shape {self.shape}")
        c, h, w = self.shape
        layers = [EqualLinear(config.z_dim, config.w_dim, lr_mul=config.mapping_lr_mul, activate=True)]
        layers += [EqualLinear(config.w_dim, config.w_dim, lr_mul=config.mapping_lr_mul, activate=True)
                   for _ in range(config.mapping_layers - 1)]
        self.mapping_net = nn.Sequential(*layers)
        self.synthesis = Synthesis(c, h, w, config.w_dim, config.channels)
        self.discriminator = Discriminator(c, h, w, config.channels)

    # ---- configuration ---------------------------------------------------
    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # StyleGAN2's Adam betas (0, 0.99) at half its lr 2e-3 (a smaller batch; not tuned further).
        # A constant LR: adversarial training has no validation loss to decay on.
        return {"batch_size": 64, "lr": 1e-3, "betas": (0.0, 0.99), "weight_decay": 0.0, "grad_clip": None,
                "warmup_steps": 0, "schedule": "constant", "ema_decay": 0.995, "steps": 4000, "val_every": 0}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channels": 8}

    def configure_optimizers(self, lr: float, weight_decay: float, betas=(0.0, 0.99)) -> dict[str, torch.optim.Optimizer]:
        # each player's parameters split by decay_groups (only weight matrices decay; StyleGAN trains
        # with weight_decay 0 by default, so both groups then act alike)
        generator = nn.ModuleList([m for name, m in self.named_children() if name != "discriminator"])
        return {"generator": torch.optim.AdamW(decay_groups(generator, weight_decay), lr=lr, betas=betas),
                "discriminator": torch.optim.AdamW(decay_groups(self.discriminator, weight_decay), lr=lr, betas=betas)}

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    # ---- the generator ---------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, z_dim) -> w (N, w_dim), after normalizing each z to unit mean square (StyleGAN's pixel norm)."""
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        return self.mapping_net(z)

    @torch.no_grad()
    def mean_w(self) -> torch.Tensor:
        """w_avg: the mapping's mean over a fixed set of z (the centre the truncation trick pulls towards)."""
        g = torch.Generator().manual_seed(W_AVG_SEED)
        z = torch.randn(W_AVG_SAMPLES, self.config.z_dim, generator=g).to(self.device)
        return self.mapping(z).mean(0)

    def synthesize(self, ws: torch.Tensor, noise_mode: str = "random", generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] (unclamped) from per-layer styles ``ws`` (N, num_ws, w_dim)."""
        if noise_mode not in NOISE_MODES:
            raise unknown("noise_mode", noise_mode, NOISE_MODES)
        n = len(ws)

        def noise(layer: StyledLayer):
            if noise_mode == "none":
                return None
            if noise_mode == "const":
                return layer.const_noise
            return torch.randn(n, 1, *layer.size, generator=generator, device=generator_device(generator, self.device)).to(ws)

        return self.synthesis(ws, noise)

    def _styles(self, z: torch.Tensor) -> torch.Tensor:
        return self.mapping(z).unsqueeze(1).expand(-1, self.num_ws, -1)

    def _mixed_styles(self, batch: Batch, n: int) -> torch.Tensor:
        """Training styles: from one z, or for ``mixing_prob`` of the images from two z's split at a
        random layer. Every draw comes from the batch's random stream."""
        z1, z2 = batch.rng.randn(n, self.config.z_dim), batch.rng.randn(n, self.config.z_dim)
        mix = batch.rng.rand(n) < self.config.mixing_prob
        cut = batch.rng.randint(self.num_ws - 1, n) + 1  # first layer that takes the second style: 1..num_ws-1
        ws1, ws2 = self._styles(z1), self._styles(z2)
        second = mix[:, None] & (torch.arange(self.num_ws, device=ws1.device)[None] >= cut[:, None])
        return torch.where(second[..., None], ws2, ws1)

    def _generate_for_training(self, batch: Batch, n: int) -> torch.Tensor:
        ws = self._mixed_styles(batch, n)
        return self.synthesis(ws, lambda layer: batch.rng.randn(n, 1, *layer.size).to(ws))

    # ---- training ----------------------------------------------------------
    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return to_signed_unit(x, self.levels) if self.levels else x

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        n = len(batch.x)
        real = self.to_unit(batch.x).requires_grad_(True)
        with torch.no_grad():
            fake = self._generate_for_training(batch, n)
        d_real, d_fake = self.discriminator(real), self.discriminator(fake)
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        r1 = grad.pow(2).flatten(1).sum(1).mean()
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean() + 0.5 * self.config.r1_gamma * r1
        opt.step("discriminator", loss_d)
        loss_g = F.softplus(-self.discriminator(self._generate_for_training(batch, n))).mean()
        opt.step("generator", loss_g)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "r1": r1.item(),
                "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}

    # ---- sampling ----------------------------------------------------------
    def _to_data(self, x: torch.Tensor) -> torch.Tensor:
        return from_signed_unit(x, self.levels) if self.levels else x

    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None,
               truncation: float = 1.0, noise_mode: str = "random") -> torch.Tensor:
        """``n`` images (levels for discrete data). ``truncation`` psi in [0, 1] pulls every w towards
        w_avg (1: none; 0: the average image); ``noise_mode`` random / const (fixed per layer) / none."""
        self.check_condition(condition, n)
        if not 0 <= truncation <= 1:
            raise GenzooError(f"truncation (psi) must lie in [0, 1], got {truncation}")
        with self._eval_mode():
            z = torch.randn(n, self.config.z_dim, generator=generator, device=generator_device(generator, self.device)).to(self.device)
            ws = self._styles(z)
            if truncation != 1:
                w_avg = self.mean_w()
                ws = w_avg + truncation * (ws - w_avg)
            return self._to_data(self.synthesize(ws, noise_mode, generator))

    @torch.no_grad()
    def mix_styles(self, z_coarse: torch.Tensor, z_fine: torch.Tensor, crossover: int | None = None,
                   noise_mode: str = "const") -> torch.Tensor:
        """Grid (len(z_coarse), len(z_fine), *shape): the first ``crossover`` layers styled by z_coarse's
        rows, the rest by z_fine's columns (default crossover: where the last resolution starts)."""
        crossover = self.num_ws - 3 if crossover is None else crossover  # the top resolution: up-layer, layer, to-image
        if not 0 <= crossover <= self.num_ws:
            raise GenzooError(f"crossover must lie in 0..{self.num_ws}, got {crossover}")
        with self._eval_mode():
            a, b = self._styles(z_coarse.to(self.device)), self._styles(z_fine.to(self.device))
            rows, cols = len(a), len(b)
            ws = torch.cat([a[:, None, :crossover].expand(-1, cols, -1, -1), b[None, :, crossover:].expand(rows, -1, -1, -1)], 2)
            images = self.synthesize(ws.reshape(rows * cols, self.num_ws, -1), noise_mode)
            return self._to_data(images).view(rows, cols, *self.shape)

    def save_plots(self, directory: Path, data) -> list[Path]:
        from genzoo.viz.samples import save_image_grid

        directory = Path(directory)
        g = torch.Generator().manual_seed(0)
        z_rows, z_cols = torch.randn(6, self.config.z_dim, generator=g), torch.randn(8, self.config.z_dim, generator=g)
        mixed = self.mix_styles(z_rows, z_cols)
        with self._eval_mode(), torch.no_grad():
            heads_rows = self._to_data(self.synthesize(self._styles(z_rows.to(self.device)), "const"))
            heads_cols = self._to_data(self.synthesize(self._styles(z_cols.to(self.device)), "const"))
        blank = torch.zeros(1, *self.shape)
        # Row 0: the fine-style sources; column 0: the coarse-style sources; cell (i, j): coarse i + fine j.
        grid = [blank, heads_cols.cpu()] + [t for i in range(len(z_rows)) for t in (heads_rows[i : i + 1].cpu(), mixed[i].cpu())]
        paths = [save_image_grid(torch.cat(grid), directory / "style_mixing.png", self.levels, nrow=len(z_cols) + 1)]
        psis = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
        rows = [torch.stack([self.sample(1, generator=torch.Generator().manual_seed(s), truncation=p, noise_mode="const")[0] for p in psis])
                for s in range(8)]
        paths.append(save_image_grid(torch.cat(rows).cpu(), directory / "truncation.png", self.levels, nrow=len(psis)))
        return paths

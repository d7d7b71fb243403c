"""Variational autoencoders: VAE, beta-VAE and the conditional VAE, scored with the IWAE bound.

A latent z ~ N(0, I) is decoded into a distribution over the data; an encoder
q(z|x) = N(mean(x), diag(var(x))) is trained jointly by maximising the evidence
lower bound (Kingma & Welling, 2014)

    ELBO(x) = E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))      (beta = 1: the VAE)

Discrete data (images of L integer levels) gets a categorical decoder: every
pixel has its own distribution over the L levels, so p(x|z) is an exact
discrete likelihood and no dequantization is involved. The L probabilities
are either free logits or (the default) a small mixture of logistics
integrated over the L bins, which knows that level 9 lies between 8 and 10.
Continuous data (2-D points) gets a Gaussian decoder with a learned variance.

``log_prob`` reports the importance-weighted bound of Burda et al. (2016),

    log p(x) >= E[ log (1/k) sum_i p(x, z_i) / q(z_i|x) ],   z_i ~ q(z|x),

which equals the ELBO at k = 1 and tightens towards log p(x) as k grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data.base import to_signed_unit
from genzoo.core.errors import GenzooError, unknown
from genzoo.models.base import (
    LABEL_CONDITION,
    LOG_PROB,
    SAMPLE,
    Batch,
    GenerativeModel,
    ModelConfig,
    Updater,
    generator_device,
    noise_from_batch,
)
from genzoo.nn.dropout import BatchDropout
from genzoo.family import register

VARIANTS = {"vae": {"beta": 1.0}, "beta-vae": {"beta": 4.0}}
SAMPLE_MODES = ("sample", "mean")
LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig(ModelConfig):
    """Defaults are the image settings; ``VAE.default_config`` adapts them to the data."""

    latent_dim: int = 16
    architecture: str = ""  # "conv" (images) or "mlp" (anything); "" picks by data kind
    conv_widths: list[int] = field(default_factory=lambda: [32, 64])  # one stride-2 stage per width
    hidden_widths: list[int] = field(default_factory=lambda: [256])  # fully connected layers
    beta: float = 1.0  # weight of the KL term: 1 is the VAE, > 1 the beta-VAE
    num_classes: int = 0  # 0: unconditional; > 0: a label embedding feeds encoder and decoder
    label_dim: int = 16
    # Discrete data: "categorical" (L free logits per pixel) or "logistic" (a mixture of
    # discretized logistics over the L bins: still an exact categorical p(x|z), but ordinal,
    # with 3 * mixture_components parameters per pixel instead of L; it generalizes better).
    pixel_distribution: str = "logistic"
    mixture_components: int = 3
    # Continuous data: Gaussian decoder whose std is "shared" per dimension (learned, the same for
    # every z) or "predicted" per output. Shared keeps 2-D data from collapsing the posterior: on
    # toy2d it scores about 0.5-1 nat per point better.
    decoder_std: str = "shared"
    min_log_std: float = -7.0  # floor on the Gaussian decoder's log std (keeps the density finite)
    # Regularizers that matter on small data (digits has 1000 training images):
    dropout: float = 0.2  # in the fully connected layers (masks from the batch's random stream)
    # Free bits (Kingma et al., 2016): each latent dimension's KL is charged at least this many nats
    # per example, so the decoder cannot win by ignoring z (posterior collapse). 0: the plain ELBO.
    free_bits: float = 0.5


class _MLP(nn.Module):
    """Linear -> SiLU for each consecutive pair of widths, with optional dropout.

    Dropout masks come from the batch's random stream (``genzoo.nn.dropout``), so a training step
    is reproducible and splits across processes exactly like the rest of the noise.
    """

    def __init__(self, widths: list[int], dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:]))
        self.dropout = BatchDropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = self.dropout(F.silu(layer(h)))
        return h


class _ConvEncoder(nn.Module):
    """Image -> flat features: a 3x3 stem, then one stride-2 stage (two 3x3 convs) per width."""

    def __init__(self, channels: int, widths: list[int]):
        super().__init__()
        chans = [widths[0], *widths]
        layers: list[nn.Module] = [nn.Conv2d(channels, chans[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class _ConvDecoder(nn.Module):
    """Flat features -> (N, out_channels, H, W): the encoder's stages mirrored with resize + conv,
    resizing to the exact sizes the encoder saw so that odd image sizes come back unchanged."""

    def __init__(self, widths: list[int], sizes: list[tuple[int, int]], out_channels: int):
        super().__init__()
        self.start = (widths[-1], *sizes[-1])
        rev = [widths[0], *widths][::-1]
        layers: list[nn.Module] = []
        for c_in, c_out, size in zip(rev, rev[1:], sizes[-2::-1]):
            layers += [nn.Upsample(size=size, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(rev[-1], out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h.view(len(h), *self.start))


def _discretized_logistic_mixture(params: torch.Tensor, levels: int) -> torch.Tensor:
    """Log-probabilities (N, L, ...) of L equal bins of [-1, 1] under a mixture of logistics.

    ``params`` is (N, 3K, ...): K mixture logits, K means, K log scales. The outer bins reach to
    -inf and +inf, so the L probabilities sum to exactly one.
    """
    logit_w, mean, log_scale = params.chunk(3, dim=1)  # each (N, K, ...)
    mean = mean.tanh()  # keep each component centred inside the data range
    log_scale = log_scale.clamp(min=-7.0)
    edges = torch.linspace(-1, 1, levels + 1, device=params.device, dtype=params.dtype)[1:-1]
    shape = (1, 1, levels - 1) + (1,) * (params.ndim - 2)
    t = (edges.view(shape) - mean.unsqueeze(2)) * torch.exp(-log_scale).unsqueeze(2)  # (N, K, L-1, ...)
    # P(bin k) = sigmoid(t_k) - sigmoid(t_{k-1}); in logs, stably:
    # log(sigmoid(a) - sigmoid(b)) = logsigmoid(a) - softplus(b) + log(1 - exp(b - a)) for a > b.
    upper, lower = t[:, :, 1:], t[:, :, :-1]
    inner = F.logsigmoid(upper) - F.softplus(lower) + torch.log(-torch.expm1(lower - upper))
    per_component = torch.cat([F.logsigmoid(t[:, :, :1]), inner, F.logsigmoid(-t[:, :, -1:])], 2)
    return torch.logsumexp(logit_w.log_softmax(1).unsqueeze(2) + per_component, 1)


@register(
    "vae",
    description="Variational autoencoder (conv or MLP), beta-VAE and conditional VAE; IWAE bound on log p(x)",
    data_kinds=("image", "points"),
    variants=VARIANTS,
)
class VAE(GenerativeModel):
    config_class = VAEConfig
    capabilities = frozenset({SAMPLE, LOG_PROB, LABEL_CONDITION})
    likelihood = "bound"

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self._bind_data_spec()
        arch = config.architecture or ("conv" if len(self.shape) == 3 else "mlp")
        if arch not in ("conv", "mlp"):
            raise unknown("architecture", arch, ("conv", "mlp"))
        if arch == "conv" and len(self.shape) != 3:
            raise GenzooError(f"architecture 'conv' needs (C, H, W) images, got shape {self.shape}; use architecture='mlp'")
        if config.decoder_std not in ("predicted", "shared"):
            raise unknown("decoder_std", config.decoder_std, ("predicted", "shared"))
        if config.pixel_distribution not in ("categorical", "logistic"):
            raise unknown("pixel_distribution", config.pixel_distribution, ("categorical", "logistic"))
        if arch == "conv" and not config.conv_widths:
            raise GenzooError("conv_widths must name at least one stage width, e.g. [32, 64]")
        if config.mixture_components < 1:
            raise GenzooError(f"mixture_components must be >= 1, got {config.mixture_components}")
        if config.latent_dim < 1:
            raise GenzooError(f"latent_dim must be >= 1, got {config.latent_dim}")
        self.architecture = arch

        # How many decoder outputs describe one data value: L logits, 3K mixture parameters, or a Gaussian's.
        if self.levels:
            logistic = config.pixel_distribution == "logistic"
            self.params_per_value = 3 * config.mixture_components if logistic else self.levels
        else:
            self.params_per_value = 2 if config.decoder_std == "predicted" else 1  # mean (and log std)
            if config.decoder_std == "shared":
                self.shared_log_std = nn.Parameter(torch.zeros(self.shape))

        label_dim = config.label_dim if config.num_classes else 0
        if config.num_classes:
            self.label_embedding = nn.Embedding(config.num_classes, label_dim)

        hidden = list(config.hidden_widths)
        if arch == "conv":
            channels = self.shape[0]
            self.encoder_body = _ConvEncoder(channels, list(config.conv_widths))
            sizes = self._stage_sizes()
            feat = config.conv_widths[-1] * sizes[-1][0] * sizes[-1][1]
            self.decoder_body = _ConvDecoder(list(config.conv_widths), sizes, channels * self.params_per_value)
            dec_out = feat
        else:
            self.encoder_body = nn.Flatten()
            feat = self.dims
            self.decoder_body = nn.Identity()
            dec_out = self.dims * self.params_per_value
        self.encoder_head = _MLP([feat + label_dim, *hidden], config.dropout)
        self.to_posterior = nn.Linear(([feat + label_dim] + hidden)[-1], 2 * config.latent_dim)
        self.decoder_head = _MLP([config.latent_dim + label_dim, *hidden[::-1]], config.dropout)
        self.to_decoder_body = nn.Linear(([config.latent_dim + label_dim] + hidden[::-1])[-1], dec_out)

    def _stage_sizes(self) -> list[tuple[int, int]]:
        """Spatial size after the stem and after each stride-2 stage (what the decoder must undo)."""
        h, w = self.shape[1:]
        sizes = [(h, w)]
        for _ in self.config.conv_widths:
            h, w = (h + 1) // 2, (w + 1) // 2
            sizes.append((h, w))
        return sizes

    # ---- configuration ---------------------------------------------------
    @classmethod
    def defaults_for(cls, data_spec: dict) -> VAEConfig:
        if data_spec.get("kind") == "image":
            # Measured on digits (1000 training images, val split): the logistic-mixture pixels beat
            # free logits by about 5 nats; dropout, weight decay and free bits fight overfitting and
            # posterior collapse, which decide the held-out NLL on so little data.
            return VAEConfig(data=data_spec, architecture="conv")
        return VAEConfig(data=data_spec, architecture="mlp", latent_dim=2, hidden_widths=[256, 256], dropout=0.0, free_bits=0.0)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # Digits (1000 images): validation NLL is best near 1500 steps (k=100: 94.6 nats at 1000,
        # 92.3 at 1500, 95.8 at 3000 with a cosine schedule), about 2.5 minutes on one core.
        if data_spec.get("kind") == "image":
            return {"batch_size": 128, "lr": 2e-3, "weight_decay": 1e-2, "grad_clip": 10.0, "steps": 1500}
        return {"batch_size": 256, "lr": 2e-3, "weight_decay": 0.0, "grad_clip": 10.0, "steps": 5000}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        if data_spec.get("kind") == "image":
            return {"conv_widths": [8, 16], "hidden_widths": [32], "latent_dim": 4}
        return {"hidden_widths": [32, 32], "dropout": 0.1}

    # ---- the two networks -------------------------------------------------
    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        # Discrete levels go to the centres of their bins in [-1, 1]; continuous values pass as they are.
        return to_signed_unit(x, self.levels) if self.levels else x

    def _encode(self, x: torch.Tensor, y: torch.Tensor | None):
        """q(z|x): mean and log variance, each (N, latent_dim)."""
        h = self.encoder_body(self._encoder_input(x))
        if y is not None:
            h = torch.cat([h, self.label_embedding(y)], 1)
        mean, log_var = self.to_posterior(self.encoder_head(h)).chunk(2, dim=1)
        return mean, log_var

    def _decode(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Decoder parameters of shape (N, P, *data_shape): P = L logits, or Gaussian mean (and log std)."""
        if y is not None:
            z = torch.cat([z, self.label_embedding(y)], 1)
        out = self.decoder_body(self.to_decoder_body(self.decoder_head(z)))
        if self.architecture == "conv":  # channels are (C * P): split into (P, C)
            return out.view(len(z), self.shape[0], self.params_per_value, *self.shape[1:]).transpose(1, 2)
        return out.view(len(z), self.params_per_value, *self.shape)

    def _gaussian(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = params[:, 0]
        raw = params[:, 1] if self.config.decoder_std == "predicted" else self.shared_log_std.expand_as(mean)
        floor = self.config.min_log_std
        return mean, floor + F.softplus(raw - floor)  # a smooth floor: log std >= min_log_std

    def _level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        """Discrete data: log p(level | z) of shape (N, L, *data_shape); sums to one over L."""
        if self.config.pixel_distribution == "categorical":
            return params.log_softmax(1)
        return _discretized_logistic_mixture(params, self.levels)

    def _log_likelihood(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per example, summed over every data value."""
        if self.levels:
            log_probs = self._level_log_probs(params)
            return log_probs.gather(1, x.long().unsqueeze(1)).flatten(1).sum(1)
        mean, log_std = self._gaussian(params)
        per_value = -0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * LOG_2PI
        return per_value.flatten(1).sum(1)

    def _mean_output(self, params: torch.Tensor) -> torch.Tensor:
        if self.levels:  # expected level, rounded to the nearest level
            levels = torch.arange(self.levels, device=params.device, dtype=params.dtype)
            probs = self._level_log_probs(params).exp()
            return torch.einsum("nl...,l->n...", probs, levels).round()
        return self._gaussian(params)[0]

    def _sample_output(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        gen_device = generator_device(generator)
        if self.levels:  # inverse-CDF sampling of each pixel's categorical
            cdf = self._level_log_probs(params).exp().cumsum(1)
            u = torch.rand(cdf[:, :1].shape, generator=generator, device=gen_device).to(cdf.device)
            return (cdf < u).sum(1).clamp(max=self.levels - 1).to(params.dtype)
        mean, log_std = self._gaussian(params)
        eps = torch.randn(mean.shape, generator=generator, device=gen_device).to(mean.device)
        return mean + log_std.exp() * eps

    # ---- training ---------------------------------------------------------
    @noise_from_batch
    def _elbo_terms(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean reconstruction loss (-log p(x|z), one z per example), mean KL, and the KL as charged
        in the loss (equal to the KL unless ``free_bits`` is set), in nats per example."""
        x = batch.x
        y = self._labels(batch.y, len(x))
        mean, log_var = self._encode(x, y)
        eps = batch.rng.randn(len(x), self.config.latent_dim).to(mean)  # batch.rng only: reproducible, split-proof
        z = mean + torch.exp(0.5 * log_var) * eps
        recon = -self._log_likelihood(self._decode(z, y), x)
        kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var)  # KL(q(z|x) || N(0, I)) per dimension, closed form
        charged = kl.clamp(min=self.config.free_bits) if self.config.free_bits else kl
        return recon.mean(), kl.sum(1).mean(), charged.sum(1).mean()

    def loss(self, batch: Batch) -> torch.Tensor:
        """The training objective, averaged over the batch: the negative ELBO with its KL weighted
        by beta (and floored per latent dimension at ``free_bits`` nats, when set)."""
        recon, _, charged_kl = self._elbo_terms(batch)
        return recon + self.config.beta * charged_kl

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        recon, kl, charged_kl = self._elbo_terms(batch)
        loss = recon + self.config.beta * charged_kl
        opt.step("main", loss)
        return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item(), "neg_elbo": (recon + kl).item()}

    # ---- likelihood -------------------------------------------------------
    def _log_weights(self, x, y, k: int, k_chunk: int, generator) -> torch.Tensor:
        """(N, k) importance log weights log p(x, z_i) - log q(z_i|x), decoded k_chunk samples at a time."""
        n, d = len(x), self.config.latent_dim
        mean, log_var = self._encode(x, y)
        std = torch.exp(0.5 * log_var)
        chunks = []
        for start in range(0, k, k_chunk):
            m = min(k_chunk, k - start)
            eps = torch.randn(m, n, d, generator=generator).to(mean)  # noise drawn on CPU: same on every device
            z = mean + std * eps  # (m, n, d)
            log_q = (-0.5 * eps**2 - 0.5 * log_var - 0.5 * LOG_2PI).sum(-1)
            log_p_z = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
            xs = x.repeat(m, *[1] * (x.ndim - 1))  # row j * n + i is example i with its j-th z
            ys = None if y is None else y.repeat(m)
            log_px_z = self._log_likelihood(self._decode(z.reshape(m * n, d), ys), xs).view(m, n)
            chunks.append((log_px_z + log_p_z - log_q).T)
        return torch.cat(chunks, 1)

    def _bound(self, x, condition, k: int, batch_size: int | None, seed: int, reduce) -> torch.Tensor:
        """Shared driver of ``log_prob`` and ``elbo``: ``reduce`` turns (N, k) log weights into (N,)."""
        x = self._check_data(x)
        if k < 1:
            raise GenzooError(f"k (importance samples) must be >= 1, got {k}")
        # Decode at most this many (example, z) rows at once, so memory stays near 2**23 floats per
        # tensor whatever k, N and the image size are.
        per_value = self.params_per_value * (self.levels or 1)  # the largest intermediate per data value
        max_rows = max(1, 2**23 // (self.dims * per_value))
        batch_size = batch_size or max(1, min(len(x), max_rows // k))
        k_chunk = max(1, max_rows // batch_size)
        generator = torch.Generator().manual_seed(seed)
        if self.config.num_classes and condition is None:
            # No labels given: bound log p(x) with a uniform class prior, log (1/C) sum_c p(x|c).
            labels = torch.arange(self.config.num_classes, device=self.device)
        else:
            labels = [self._labels(condition, len(x))] if self.config.num_classes else [None]
        out = []
        with torch.no_grad(), self._eval_mode():
            for start in range(0, len(x), batch_size):
                xb = x[start : start + batch_size]
                per_class = []
                for y in labels:
                    if y is not None:
                        y = y.expand(len(xb)) if y.ndim == 0 else y[start : start + batch_size]
                    per_class.append(reduce(self._log_weights(xb, y, k, k_chunk, generator)))
                per_class = torch.stack(per_class, 1)
                out.append(torch.logsumexp(per_class, 1) - math.log(per_class.shape[1]))
        return torch.cat(out)

    def log_prob(self, x: torch.Tensor, *, condition=None, k: int = 1000, batch_size: int | None = None,
                 seed: int = 0) -> torch.Tensor:
        """IWAE lower bound on log p(x) in nats per example (k importance samples; tighter as k grows).

        For discrete data x holds integer levels and the bound is on the discrete probability.
        A conditional model bounds log p(x|condition), or log p(x) under a uniform class prior when
        no condition is given. The noise comes from ``seed``, so repeated calls agree.
        """
        return self._bound(x, condition, k, batch_size, seed, lambda w: torch.logsumexp(w, 1) - math.log(w.shape[1]))

    def elbo(self, x: torch.Tensor, *, condition=None, samples: int = 1, batch_size: int | None = None,
             seed: int = 0) -> torch.Tensor:
        """Evidence lower bound (beta = 1) in nats per example, averaged over ``samples`` draws of z."""
        return self._bound(x, condition, samples, batch_size, seed, lambda w: w.mean(1))

    # ---- generation -------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None,
               temperature: float = 1.0, mode: str = "sample") -> torch.Tensor:
        """``n`` examples from z ~ N(0, temperature^2 I): integer levels (as floats) for discrete data.

        ``mode="mean"`` returns the decoder's mean (rounded expected level) instead of a draw from it.
        A conditional model given no condition draws its labels uniformly.
        """
        if mode not in SAMPLE_MODES:
            raise unknown("mode", mode, SAMPLE_MODES)
        if temperature < 0:
            raise GenzooError(f"temperature must be >= 0, got {temperature}")
        y = self.check_condition(condition, n)
        gen_device = generator_device(generator)
        if self.config.num_classes and y is None:
            y = torch.randint(self.config.num_classes, (n,), generator=generator, device=gen_device).to(self.device)
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=gen_device).to(self.device)
        with self._eval_mode():
            params = self._decode(z * temperature, y)
            return self._mean_output(params) if mode == "mean" else self._sample_output(params, generator)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, *, condition=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x): its mean and log variance, each (N, latent_dim)."""
        x = self._check_data(x)
        with self._eval_mode():
            return self._encode(x, self._labels(condition, len(x)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, condition=None, mode: str = "mean",
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode the posterior mean of each example (``mode="sample"`` draws from the decoder)."""
        if mode not in SAMPLE_MODES:
            raise unknown("mode", mode, SAMPLE_MODES)
        x = self._check_data(x)
        y = self._labels(condition, len(x))
        with self._eval_mode():
            params = self._decode(self._encode(x, y)[0], y)
            return self._mean_output(params) if mode == "mean" else self._sample_output(params, generator)

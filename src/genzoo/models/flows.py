"""What RealNVP and Glow share: a standard normal base, dequantization, the likelihood, sampling.

A flow is an invertible map f from data to latent, z = f(y), with
z ~ N(0, I), so log p(y) = log N(f(y); 0, I) + log|det df/dy| exactly.

Continuous data (2-D points) is modelled as it is: ``log_prob`` is the exact
log density in nats per point.

Discrete images (L integer levels k) are dequantized onto [-1, 1]:
y = (k + u) / L * 2 - 1 with u ~ U[0, 1)^D, so each level owns its whole bin
of width 2/L. The flow is a density on those y coordinates (any rescaling,
such as the logit preprocessing, is a layer with its log-determinant), and

    log P(k) >= log mean_j p(y_j) + D log(2/L),   y_j = dequantized k, j = 1..K

(Jensen on the average over the bin; the K-sample average is the importance-
weighted form, tighter as K grows). ``log_prob`` reports that bound, so
``likelihood`` is "bound" for a model of discrete data and "exact" otherwise.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from genzoo.data.base import dequantize, from_signed_unit, to_signed_unit
from genzoo.core.errors import GenzooError, unknown
from genzoo.core.units import bin_log_volume, nats_to_bits_per_dim
from genzoo.models.base import INTERPOLATE, LOG_PROB, SAMPLE, Batch, GenerativeModel, ModelConfig, Updater, generator_device
from genzoo.nn.flow_layers import (
    FlowLayer,
    FlowSequence,
    LogitTransform,
    MultiScale,
    conv_conditioner,
    mlp_conditioner,
)

LOG_2PI = math.log(2 * math.pi)
PREPROCESSING = ("logit", "none")  # image flows model logit((y + 1) / 2), or y in [-1, 1] directly
INTERPOLATIONS = ("slerp", "linear")


class LikelihoodKind:
    """``model.likelihood``: "bound" for a flow over dequantized discrete data, "exact" for continuous data.

    On the class (``genzoo list``, the registry), before any data is known,
    it says both.
    """

    CLASS_VALUE = "exact; bound on discrete data"

    def __get__(self, model, owner=None):
        if model is None:
            return self.CLASS_VALUE
        return "bound" if model.levels else "exact"


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over everything but the batch dimension."""
    return (-0.5 * z * z - 0.5 * LOG_2PI).flatten(1).sum(1)


class FlowModel(GenerativeModel):
    """Base of the flow families: subclasses build ``self.flow`` (data -> flat latent) in ``build_flow``."""

    capabilities = frozenset({SAMPLE, LOG_PROB, INTERPOLATE})
    likelihood = LikelihoodKind()
    image_train_steps: ClassVar[int] = 2000  # each family's measured default on digits (see its default_train)

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self._bind_data_spec()
        if len(self.shape) not in (1, 3):
            raise GenzooError(f"flows handle (C, H, W) images or (D,) points; got per-example shape {self.shape}")
        if len(self.shape) == 1 and self.dims < 2:
            raise GenzooError("a coupling flow needs at least 2 dimensions")
        if config.preprocess not in PREPROCESSING:
            raise unknown("preprocess", config.preprocess, PREPROCESSING)
        if min(config.hidden, config.hidden_layers) < 1:
            raise GenzooError("hidden and hidden_layers must be >= 1")
        self.flow = self.build_flow(config)
        out = self.flow.output_shape(self.shape)
        if out != (self.dims,):
            raise GenzooError(f"internal: the flow maps {self.shape} to {out}, expected ({self.dims},)")

    def build_flow(self, config) -> FlowLayer:
        raise NotImplementedError

    # ---- builder pieces both image flows use ----------------------------------
    def _conditioner(self, given: int, out: int) -> nn.Module:
        """The coupling network: an MLP on points, convolutions on images (width, depth, dropout from the config)."""
        make = mlp_conditioner if len(self.shape) == 1 else conv_conditioner
        return make(given, out, self.config.hidden, self.config.hidden_layers, self.config.dropout)

    def _multiscale_image_flow(self, stages: list[FlowLayer]) -> FlowSequence:
        """The preprocessing (logit or none), then the stages with half the channels factored out after each."""
        layers = [LogitTransform(self.config.logit_alpha)] if self.config.preprocess == "logit" else []
        return FlowSequence([*layers, MultiScale(stages, self.shape)])

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # grad_clip 100: a guard against rare spikes only; flows at init have large, useful gradients.
        if data_spec.get("kind") == "image":
            return {"batch_size": 64, "lr": 1e-3, "weight_decay": 0.0, "grad_clip": 100.0, "steps": cls.image_train_steps}
        return {"batch_size": 256, "lr": 2e-3, "weight_decay": 0.0, "grad_clip": 100.0, "steps": 5000}

    def save_plots(self, directory, data) -> list:
        """2-D points: the learned density beside the data (``density.png``)."""
        if self.shape != (2,):
            return []
        from genzoo.viz.flows import save_density_plot

        return [save_density_plot(self, data, Path(directory) / "density.png", title=f"{self.family} on {data.name}")]

    # ---- the density ---------------------------------------------------------
    def log_density(self, y: torch.Tensor) -> torch.Tensor:
        """Exact log p(y) per example, in the model's coordinates ([-1, 1] for discrete images)."""
        z, logdet = self.flow(y)
        return standard_normal_log_prob(z) + logdet

    def _bin_log_volume(self) -> float:
        return bin_log_volume(self.dims, self.levels) if self.levels else 0.0

    # ---- training ------------------------------------------------------------
    def _nll(self, batch: Batch) -> torch.Tensor:
        """Per-example NLL (nats) of one dequantization draw: an unbiased estimate of the bound's mean."""
        x = batch.x
        y = dequantize(x, self.levels, batch.rng.rand_like(x)) if self.levels else x
        return -(self.log_density(y) + self._bin_log_volume())

    def loss(self, batch: Batch) -> torch.Tensor:
        return self._nll(batch).mean()

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        logs = super().training_step(batch, step, opt)
        return {**logs, "bits_per_dim": nats_to_bits_per_dim(logs["loss"], self.dims)}

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, seed: int = 0) -> "FlowModel":
        """Data-dependent initialisation (actnorm) from a batch of data, as the first training step would do it."""
        x = self._check_data(x)
        g = torch.Generator().manual_seed(seed)
        y = dequantize(x, self.levels, torch.rand(x.shape, generator=g).to(x)) if self.levels else x
        was_training = self.training
        self.train()
        self.flow(y)
        self.train(was_training)
        return self

    # ---- likelihood ----------------------------------------------------------
    def log_prob(self, x: torch.Tensor, *, samples: int = 16, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
        """Per-example log-likelihood in nats of the data as stored.

        Points: the exact log density. Discrete images: the lower bound
        log mean_j p(y_j) + D log(2/L) on log P(k) over ``samples``
        dequantization draws y_j (from ``seed``, so repeated calls agree).
        """
        x = self._check_data(x)
        if samples < 1:
            raise GenzooError(f"samples (dequantization draws) must be >= 1, got {samples}")
        with torch.no_grad(), self._eval_mode():
            if not self.levels:
                return torch.cat([self.log_density(c) for c in x.split(batch_size or 8192)])
            g = torch.Generator().manual_seed(seed)
            batch_size = batch_size or max(1, 4096 // samples)
            out = []
            for chunk in x.split(batch_size):
                noise = torch.rand(samples, *chunk.shape, generator=g).to(chunk)  # on CPU: same on every device
                y = dequantize(chunk.unsqueeze(0), self.levels, noise).flatten(0, 1)
                log_p = self.log_density(y).view(samples, len(chunk))
                out.append(torch.logsumexp(log_p, 0) - math.log(samples))
            return torch.cat(out) + self._bin_log_volume()

    # ---- latents and generation ------------------------------------------------
    def _to_data(self, y: torch.Tensor) -> torch.Tensor:
        """Model coordinates -> data as stored: levels (as floats) for discrete images."""
        if not self.levels:
            return y
        bad = ~torch.isfinite(y)
        if bad.any():
            # A latent far in the tails can overflow an inverse; say so rather than return NaN pixels
            # that would fail every downstream metric. The bounded coupling scales make this rare.
            rows = int(bad.flatten(1).any(1).sum())
            warnings.warn(f"{self.family}: {rows} of {len(y)} samples overflowed in the inverse flow; "
                          "non-finite pixels were replaced (inf by the edge level, NaN by the middle one); "
                          "try a lower temperature",
                          RuntimeWarning, stacklevel=3)
            y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
        return from_signed_unit(y.clamp(-1, 1), self.levels)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Flat latents (N, D) of data; discrete levels are taken at the centres of their bins."""
        x = self._check_data(x)
        y = to_signed_unit(x, self.levels) if self.levels else x
        with self._eval_mode():
            return self.flow(y)[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Data (levels for discrete images) from flat latents (N, D)."""
        with self._eval_mode():
            y = self.flow.inverse(z.to(self.device))
        return self._to_data(y.view(len(z), *self.shape))

    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` examples from z ~ N(0, temperature^2 I): levels (as floats) for discrete images."""
        if condition is not None:
            raise GenzooError(f"{self.family} is unconditional: sample without condition=")
        if temperature < 0:
            raise GenzooError(f"temperature must be >= 0, got {temperature}")
        gen_device = generator_device(generator)
        z = torch.randn(n, self.dims, generator=generator, device=gen_device).to(self.device)
        return self.decode(z * temperature)

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8, *, method: str = "slerp") -> torch.Tensor:
        """Decode ``steps`` latents on the path from x_a's latent to x_b's (both ends included).

        ``method="slerp"`` follows the great circle (latents of typical data lie
        near a sphere, which a straight line would cut through); "linear" is the
        straight line. x_a and x_b are single examples, with or without a batch
        dimension of 1. Returns (steps, *shape).
        """
        if method not in INTERPOLATIONS:
            raise unknown("interpolation", method, INTERPOLATIONS)
        if steps < 2:
            raise GenzooError(f"steps must be >= 2, got {steps}")
        ends = [torch.as_tensor(x, dtype=torch.float32).reshape(-1, *self.shape) for x in (x_a, x_b)]
        if any(len(e) != 1 for e in ends):
            raise GenzooError(f"interpolate takes two single examples of shape {self.shape}")
        z_a, z_b = self.encode(torch.cat(ends)).double()
        t = torch.linspace(0, 1, steps, dtype=torch.float64, device=z_a.device).unsqueeze(1)
        cos = torch.dot(z_a, z_b) / (z_a.norm() * z_b.norm()).clamp_min(1e-12)
        omega = torch.arccos(cos.clamp(-1, 1))
        if method == "linear" or omega.abs() < 1e-4:
            z = (1 - t) * z_a + t * z_b
        else:
            z = (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)
        return self.decode(z.float())


__all__ = ["FlowModel", "LikelihoodKind", "standard_normal_log_prob"]

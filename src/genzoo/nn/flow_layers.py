"""Invertible layers shared by the flow families (RealNVP, Glow).

Every layer maps data towards the latent: ``forward(x) -> (z, logdet)``, where
``logdet`` is log|det dz/dx| per example (shape (N,)), and ``inverse(z) -> x``
undoes it. Layers that change the per-example shape say how in
``output_shape``, so a model can lay out its multi-scale latent without
running data through it.

The pieces:

- ``FlowSequence``: layers applied in turn (log-determinants add up).
- ``AffineCoupling``: z_b = x_b * exp(s(x_a)) + t(x_a), x_a passed through;
  the split is a mask (checkerboard or channel halves for images, alternating
  features for points). ``checkerboard_mask`` and ``alternating_mask`` build them.
- ``ActNorm``: per-channel affine with data-dependent initialisation.
- ``InvertibleLinear``: an invertible 1x1 convolution (images) or linear map
  (points) in LU form, so its log-determinant is a sum of log-diagonals.
- ``Squeeze``: (C, H, W) -> (4C, H/2, W/2), trading space for channels.
- ``LogitTransform``: [-1, 1] -> R, so that the flow never has to model the
  hard edges of bounded data.
- ``MultiScale``: stages of layers, half the channels leaving as latents after
  each stage but the last; its output is the flat latent (N, D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError, unknown
from genzoo.nn.dropout import BatchDropout

SCALE_FUNCTIONS = ("tanh", "sigmoid")


class FlowLayer(nn.Module):
    """An invertible map x -> z with a tractable log-determinant."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example shape of z for a per-example input ``shape``."""
        return tuple(shape)


class FlowSequence(FlowLayer):
    """Layers applied in turn; the inverse runs them backwards."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)  # a ModuleList, so every layer is registered, trained and saved

    def forward(self, x):
        logdet = x.new_zeros(len(x))
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z):
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def output_shape(self, shape):
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return tuple(shape)


# ---- couplings ---------------------------------------------------------------------


def checkerboard_mask(height: int, width: int, parity: int = 0) -> torch.Tensor:
    """(1, H, W) bool mask, True on squares where (row + col) % 2 == parity: the pixels passed through."""
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    return ((rows + cols) % 2 == parity).unsqueeze(0)


def alternating_mask(features: int, parity: int = 0) -> torch.Tensor:
    """(features,) bool mask, True on every other feature starting at ``parity``."""
    return torch.arange(features) % 2 == parity


def channel_mask(channels: int, first_half: bool = True) -> torch.Tensor:
    """(channels,) bool mask, True on the first (or second) half of the channels."""
    mask = torch.arange(channels) < channels // 2
    return mask if first_half else ~mask


def log_scale_fn(raw: torch.Tensor, kind: str, bound: float) -> torch.Tensor:
    """The coupling's log-scale from the network's raw output, kept in a stable range.

    "tanh": bound * tanh(raw / bound), identity near 0 and never beyond +-bound.
    "sigmoid": Glow's scale sigmoid(raw + 2), in (0, 1) and near 0.88 at first, with its log
    softly floored at -bound. Glow's plain sigmoid has no floor, so the inverse (sampling)
    multiplies by up to 1/sigmoid = inf: measured, about 1 in 1000-10000 samples of a trained
    digits Glow at temperature 1 came back NaN. With the floor the inverse scales by at most e^bound.
    """
    if kind == "tanh":
        return bound * torch.tanh(raw / bound)
    return bound * torch.tanh(F.logsigmoid(raw + 2.0) / bound)


class AffineCoupling(FlowLayer):
    """z = x * exp(s) + t on the free part, with (t, s) = net(given part); the given part passes through.

    ``mask`` is True where x is given. Two forms, picked from the mask's shape:

    - a feature mask, shape (features,): features split along dim 1. The network
      sees only the given features (N, n_given, ...) and returns 2 * n_free
      features. Channel masks for images, alternating masks for points.
    - a spatial mask, shape (1, H, W): images stay whole; the network sees
      x * mask and returns 2C channels, of which the free positions are used
      (the checkerboard of RealNVP).

    ``net`` should start at zero output (zero-initialised last layer) so the
    coupling starts as the identity, or near it for the "sigmoid" scale.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module, scale: str = "tanh", scale_bound: float = 3.0):
        super().__init__()
        if scale not in SCALE_FUNCTIONS:
            raise unknown("coupling scale", scale, SCALE_FUNCTIONS)
        mask = torch.as_tensor(mask, dtype=torch.bool)
        self.spatial = mask.ndim > 1
        self.net = net
        self.scale, self.scale_bound = scale, float(scale_bound)
        if self.spatial:
            # derived from the config: rebuilt on load, so not saved
            self.register_buffer("mask", mask.float(), persistent=False)
        else:
            given, free = mask.nonzero().flatten(), (~mask).nonzero().flatten()
            if len(given) == 0 or len(free) == 0:
                raise GenzooError(f"a coupling mask needs given and free features, got {mask.tolist()}")
            self.register_buffer("given", given, persistent=False)
            self.register_buffer("free", free, persistent=False)
            self.register_buffer("unsort", torch.argsort(torch.cat([given, free])), persistent=False)
            # Contiguous blocks (channel masks, 2-D alternating masks) are sliced rather than gathered: cheaper.
            n_given = len(given)
            if torch.equal(given, torch.arange(n_given)):
                self.layout = "given-first"
            elif torch.equal(given, torch.arange(len(mask) - n_given, len(mask))):
                self.layout = "given-last"
            else:
                self.layout = "gather"

    def _shift_log_scale(self, given: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(given).chunk(2, dim=1)
        return shift, log_scale_fn(raw, self.scale, self.scale_bound)

    def _split(self, x):
        """(given, free) parts of x along dim 1."""
        n_given, n_free = len(self.given), len(self.free)
        if self.layout == "given-first":
            return x[:, :n_given], x[:, n_given:]
        if self.layout == "given-last":
            return x[:, n_free:], x[:, :n_free]
        return x.index_select(1, self.given), x.index_select(1, self.free)

    def _merge(self, given, free):
        if self.layout == "given-first":
            return torch.cat([given, free], 1)
        if self.layout == "given-last":
            return torch.cat([free, given], 1)
        return torch.cat([given, free], 1).index_select(1, self.unsort)

    def forward(self, x):
        if self.spatial:
            free = 1 - self.mask
            shift, log_s = self._shift_log_scale(x * self.mask)
            shift, log_s = shift * free, log_s * free  # given pixels: scale 1, shift 0
            return x * log_s.exp() + shift, log_s.flatten(1).sum(1)
        x_given, x_free = self._split(x)
        shift, log_s = self._shift_log_scale(x_given)
        return self._merge(x_given, x_free * log_s.exp() + shift), log_s.flatten(1).sum(1)

    def inverse(self, z):
        if self.spatial:
            free = 1 - self.mask
            shift, log_s = self._shift_log_scale(z * self.mask)  # the given pixels are unchanged by forward
            return (z - shift * free) * torch.exp(-log_s * free)
        z_given, z_free = self._split(z)
        shift, log_s = self._shift_log_scale(z_given)
        return self._merge(z_given, (z_free - shift) * torch.exp(-log_s))


def mlp_conditioner(in_features: int, out_features: int, hidden: int, layers: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> ReLU (-> dropout), ``layers`` times, then a zero-initialised Linear (the coupling starts
    as the identity)."""
    widths = [in_features] + [hidden] * layers
    modules: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        modules += [nn.Linear(w_in, w_out), nn.ReLU()]
        if dropout:
            modules.append(BatchDropout(dropout))
    last = nn.Linear(widths[-1], out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*modules, last)


def conv_conditioner(in_channels: int, out_channels: int, hidden: int, layers: int, dropout: float = 0.0) -> nn.Sequential:
    """3x3 conv -> ReLU, then (layers - 1) x [1x1 conv -> ReLU], then a zero-initialised 3x3 conv (Glow's NN).
    ``dropout`` after each ReLU: the flow is still exactly invertible in eval mode, and small data needs it."""
    modules: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU()]
    if dropout:
        modules.append(BatchDropout(dropout))
    for _ in range(layers - 1):
        modules += [nn.Conv2d(hidden, hidden, 1), nn.ReLU()]
        if dropout:
            modules.append(BatchDropout(dropout))
    last = nn.Conv2d(hidden, out_channels, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*modules, last)


# ---- actnorm and the invertible 1x1 convolution ---------------------------------------


def _per_channel(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a (C,) parameter so it broadcasts over (N, C) or (N, C, H, W)."""
    return p.view(1, -1, *([1] * (x.ndim - 2)))


def _positions(x: torch.Tensor) -> int:
    """Spatial positions per channel: H * W for images, 1 for vectors."""
    return math.prod(x.shape[2:])


class ActNorm(FlowLayer):
    """z = (x + bias) * exp(log_scale), per channel (Glow).

    Data-dependent initialisation: the first forward pass in training mode sets
    bias and log_scale so that this batch comes out with zero mean and unit
    variance per channel. ``initialized`` is a buffer, so a saved model does
    not re-initialise when it is loaded and trained further. Under
    ``torch.distributed`` the statistics are averaged over processes, so every
    process starts from the same weights.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.ndim)]
        moments = torch.stack([x.mean(dims), (x * x).mean(dims)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(moments)
            moments /= torch.distributed.get_world_size()
        mean, mean_sq = moments
        std = (mean_sq - mean * mean).clamp_min(0).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def forward(self, x):
        if self.training and not self.initialized:
            self.initialize(x)
        z = (x + _per_channel(self.bias, x)) * _per_channel(self.log_scale, x).exp()
        return z, (self.log_scale.sum() * _positions(x)).expand(len(x))

    def inverse(self, z):
        return z * _per_channel(-self.log_scale, z).exp() - _per_channel(self.bias, z)


class InvertibleLinear(FlowLayer):
    """z = W x over the channels: a 1x1 convolution for images, a linear map for vectors (Glow).

    W = P L (U + diag(sign * exp(log_scale))), with P a fixed permutation, L
    unit lower triangular and U strictly upper triangular, so
    log|det W| = sum(log_scale) and W stays invertible whatever the training
    does. Starts at a random rotation.
    """

    def __init__(self, channels: int):
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels))[0]
        perm, lower, upper = torch.linalg.lu(rotation)
        diag = torch.diagonal(upper)
        self.register_buffer("permutation", perm)
        self.register_buffer("sign", torch.sign(diag))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_scale = nn.Parameter(diag.abs().log())

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(len(self.sign), device=self.sign.device, dtype=self.lower.dtype)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * self.log_scale.exp())
        return lower, upper

    def weight(self) -> torch.Tensor:
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def inverse_weight(self) -> torch.Tensor:
        """W^-1 = U^-1 L^-1 P^T by triangular solves (no general matrix inverse)."""
        lower, upper = self._factors()
        l_inv_pt = torch.linalg.solve_triangular(lower, self.permutation.T, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, l_inv_pt, upper=True)

    @staticmethod
    def _mix(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return F.conv2d(x, w[:, :, None, None])
        return x @ w.T

    def forward(self, x):
        return self._mix(self.weight(), x), (self.log_scale.sum() * _positions(x)).expand(len(x))

    def inverse(self, z):
        return self._mix(self.inverse_weight(), z)


# ---- reshaping and preprocessing -------------------------------------------------------


class Squeeze(FlowLayer):
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 block of pixels becomes 4 channels. Volume-preserving."""

    def forward(self, x):
        n, c, h, w = x.shape
        z = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        return z, x.new_zeros(n)

    def inverse(self, z):
        n, c4, h, w = z.shape
        c = c4 // 4
        return z.view(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * w)

    def output_shape(self, shape):
        c, h, w = shape
        if h % 2 or w % 2:
            raise GenzooError(f"cannot squeeze a {h}x{w} image: height and width must be even at every scale; "
                              "use fewer scales/levels")
        return (4 * c, h // 2, w // 2)


class LogitTransform(FlowLayer):
    """[-1, 1] -> R: v = alpha + (1 - 2 alpha) (x + 1) / 2, z = log(v / (1 - v)) (RealNVP's preprocessing).

    ``alpha`` keeps the edges of the box finite. The log-determinant is
    included, so the model's density stays a density in the [-1, 1] coordinates.
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 < alpha < 0.5:
            raise GenzooError(f"logit alpha must lie in (0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x):
        a = self.alpha
        v = a + (1 - 2 * a) * (x + 1) / 2
        z = torch.log(v) - torch.log1p(-v)
        logdet = math.log((1 - 2 * a) / 2) - torch.log(v) - torch.log1p(-v)
        return z, logdet.flatten(1).sum(1)

    def inverse(self, z):
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha) * 2 - 1


class MultiScale(FlowLayer):
    """Stages of layers on (N, C, H, W); after each stage but the last, the first half of the channels
    leaves as part of the latent (RealNVP / Glow "factor out"). The output is the flat latent (N, D):
    the factored-out pieces in order, then what the last stage returns."""

    def __init__(self, stages, input_shape: tuple[int, int, int]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.input_shape = tuple(input_shape)
        shape, self.latent_shapes = self.input_shape, []
        for i, stage in enumerate(self.stages):
            shape = stage.output_shape(shape)
            if i < len(self.stages) - 1:
                out = shape[0] // 2
                if out == 0:
                    raise GenzooError(f"cannot factor out half of {shape[0]} channel(s); use fewer scales/levels")
                self.latent_shapes.append((out, *shape[1:]))
                shape = (shape[0] - out, *shape[1:])
        self.latent_shapes.append(tuple(shape))
        self.latent_sizes = [math.prod(s) for s in self.latent_shapes]

    def forward(self, x):
        logdet = x.new_zeros(len(x))
        parts = []
        for i, stage in enumerate(self.stages):
            x, ld = stage(x)
            logdet = logdet + ld
            if i < len(self.stages) - 1:
                out = self.latent_shapes[i][0]
                parts.append(x[:, :out].flatten(1))
                x = x[:, out:]
        parts.append(x.flatten(1))
        return torch.cat(parts, 1), logdet

    def inverse(self, z):
        n = len(z)
        pieces = z.split(self.latent_sizes, 1)
        x = pieces[-1].reshape(n, *self.latent_shapes[-1])
        for i in reversed(range(len(self.stages))):
            if i < len(self.stages) - 1:
                x = torch.cat([pieces[i].reshape(n, *self.latent_shapes[i]), x], 1)
            x = self.stages[i].inverse(x)
        return x

    def output_shape(self, shape):
        if tuple(shape) != self.input_shape:
            raise GenzooError(f"this flow was built for shape {self.input_shape}, got {tuple(shape)}")
        return (sum(self.latent_sizes),)


__all__ = [
    "ActNorm",
    "AffineCoupling",
    "FlowLayer",
    "FlowSequence",
    "InvertibleLinear",
    "LogitTransform",
    "MultiScale",
    "Squeeze",
    "alternating_mask",
    "channel_mask",
    "checkerboard_mask",
    "conv_conditioner",
    "log_scale_fn",
    "mlp_conditioner",
]

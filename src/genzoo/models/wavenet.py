"""WaveNet: an autoregressive model of 8-bit mu-law waveforms with an exact likelihood (van den Oord et al. 2016).

A clip is factorised sample by sample, p(x) = prod_t p(x_t | x_<t, y), each factor a 256-way
softmax over the mu-law levels. The network is a stack of dilated causal convolutions (kernel 2,
dilations 1, 2, 4, ... per stack) with gated activations tanh(W_f h + V_f y) * sigmoid(W_g h + V_g y),
a residual connection round every layer and a skip connection from every layer to the output head
(ReLU, 1x1, ReLU, 1x1 -> 256 logits). The class ``y`` (a digit) enters every gate as a learned bias.

Causality: the input is the waveform shifted one sample to the right (x_{t-1} at position t) and
every convolution pads on the left only, so the logits at t read x_<t and nothing after.

Training maximises the likelihood on random crops of ``crop`` samples of each clip (the receptive
field, about 2 x 255 samples by default, is far shorter than a clip; crops make a step cheap).
``log_prob`` is the exact log-likelihood of whole clips, in nats per clip (bits per sample =
nats / (T ln 2)). ``sample`` runs the fast generation scheme of Paine et al. (2016): every layer
keeps a queue of its past inputs, so each new sample costs one step through the layers rather
than a pass over the whole clip; ``cache=False`` runs the plain network on the prefix instead
(the same samples, much slower; a test holds the two equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.core.units import nats_to_bits_per_dim
from genzoo.data.base import to_signed_unit
from genzoo.family import register
from genzoo.models.base import LABEL_CONDITION, LOG_PROB, SAMPLE, Batch, GenerativeModel, ModelConfig, Updater, generator_device


@dataclass
class WaveNetConfig(ModelConfig):
    # Sized for a 2-core CPU: 2 stacks of 8 layers reach 511 samples (64 ms at 8 kHz), 0.1M parameters.
    channels: int = 32  # residual channels
    skip_channels: int = 64
    stacks: int = 2
    layers_per_stack: int = 8  # dilations 1, 2, ..., 2^(layers-1) in each stack
    num_classes: int = 0  # 0: unconditional; > 0: a class bias in every gate
    crop: int = 1000  # training crop length in samples (about 2 receptive fields)


class _GatedLayer(nn.Module):
    def __init__(self, channels: int, skip: int, dilation: int, num_classes: int, last: bool = False):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(channels, 2 * channels, 2, dilation=dilation)
        self.cond = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        self.res = None if last else nn.Conv1d(channels, channels, 1)  # the last layer feeds only the skips
        self.skip = nn.Conv1d(channels, skip, 1)

    def gate(self, pre: torch.Tensor, y) -> torch.Tensor:
        if self.cond is not None:
            pre = pre + self.cond(y).unsqueeze(-1)
        f, g = pre.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, h: torch.Tensor, y) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.gate(self.conv(F.pad(h, (self.dilation, 0))), y)  # left padding only: causal
        return (h if self.res is None else h + self.res(z)), self.skip(z)

    def step(self, h: torch.Tensor, past: torch.Tensor, y) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: ``h`` (n, C) now and ``past`` (n, C) the input ``dilation`` steps ago."""
        w = self.conv.weight  # (2C, C, 2): tap 0 reads t - dilation, tap 1 reads t
        pre = torch.addmm(self.conv.bias, past, w[:, :, 0].t()) + h @ w[:, :, 1].t()
        z = self.gate(pre.unsqueeze(-1), y).squeeze(-1)
        skip = torch.addmm(self.skip.bias, z, self.skip.weight[:, :, 0].t())
        if self.res is None:
            return h, skip
        return h + torch.addmm(self.res.bias, z, self.res.weight[:, :, 0].t()), skip


@register(
    "wavenet",
    description="WaveNet: dilated causal convolutions, gated units, 256-way mu-law softmax; exact likelihood, fast cached generation",
    data_kinds=("audio",),
    variants={"default": {}, "unconditional": {"num_classes": 0}},
)
class WaveNet(GenerativeModel):
    config_class = WaveNetConfig
    capabilities = frozenset({SAMPLE, LOG_PROB, LABEL_CONDITION})
    likelihood = "exact"

    def __init__(self, config: WaveNetConfig):
        super().__init__(config)
        spec = self._bind_data_spec()
        if len(self.shape) != 2 or self.shape[0] != 1 or not self.levels:
            raise GenzooError(f"wavenet models mono mu-law clips (N, 1, T) of integer levels; got shape {spec['shape']}, levels {self.levels}")
        if min(config.channels, config.skip_channels, config.stacks, config.layers_per_stack, config.crop) < 1 or config.num_classes < 0:
            raise GenzooError("wavenet: channels, skip_channels, stacks, layers_per_stack and crop must be >= 1, num_classes >= 0")
        c = config.channels
        self.input = nn.Conv1d(1, c, 1)
        dilations = [2**i for _ in range(config.stacks) for i in range(config.layers_per_stack)]
        self.layers = nn.ModuleList(_GatedLayer(c, config.skip_channels, d, config.num_classes, last=i == len(dilations) - 1)
                                    for i, d in enumerate(dilations))
        self.head1 = nn.Conv1d(config.skip_channels, config.skip_channels, 1)
        self.head2 = nn.Conv1d(config.skip_channels, self.levels, 1)

    @property
    def receptive_field(self) -> int:
        return 1 + sum(layer.dilation for layer in self.layers)

    @classmethod
    def defaults_for(cls, data_spec: dict) -> WaveNetConfig:
        return WaveNetConfig(data=data_spec, num_classes=int(data_spec.get("num_classes") or 0))

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        return {"batch_size": 16, "lr": 2e-3, "weight_decay": 0.0, "grad_clip": 1.0, "ema_decay": 0.999}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"channels": 8, "skip_channels": 8, "stacks": 1, "layers_per_stack": 3, "crop": 128}

    # ---- the network ----------------------------------------------------------
    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 256, T) logits of every sample of ``x`` (levels, (N, 1, T)) given the samples before it."""
        u = to_signed_unit(x, self.levels)
        u = F.pad(u, (1, 0))[..., :-1]  # shift right: position t sees x_{t-1}
        h = self.input(u)
        skips = 0
        for layer in self.layers:
            h, s = layer(h, y)
            skips = skips + s
        return self.head2(F.relu(self.head1(F.relu(skips))))

    def _log_prob_given(self, x: torch.Tensor, y) -> torch.Tensor:
        lp = self.logits(x, y).log_softmax(1)
        return lp.gather(1, x.long()).flatten(1).sum(1)

    # ---- training ---------------------------------------------------------------
    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean negative log-likelihood in nats per sample of a random crop of each clip."""
        x = self._check_data(batch.x)
        y = self._labels(batch.y, len(x))
        T, crop = x.shape[-1], min(self.config.crop, x.shape[-1])
        start = batch.rng.randint(T - crop + 1, len(x)).to(x.device)
        x = x.gather(2, (start[:, None] + torch.arange(crop, device=x.device))[:, None])
        return -self._log_prob_given(x, y).mean() / crop

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        logs = super().training_step(batch, step, opt)
        return {**logs, "bits_per_sample": logs["loss"] / math.log(2)}

    # ---- likelihood ---------------------------------------------------------------
    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, *, condition=None, batch_size: int = 32) -> torch.Tensor:
        """Exact log p(x) in nats per clip. A conditional model with no condition gives the uniform
        class mixture, log (1/K) sum_k p(x | k)."""
        x = self._check_data(x)
        if self.config.num_classes and condition is None:
            labels = [torch.full((len(x),), k, device=self.device) for k in range(self.config.num_classes)]
        else:
            labels = [self.check_condition(condition, len(x))]
        out = []
        with self._eval_mode():
            for i in range(0, len(x), batch_size):
                per = torch.stack([self._log_prob_given(x[i : i + batch_size], None if y is None else y[i : i + batch_size])
                                   for y in labels], 1)
                out.append(torch.logsumexp(per, 1) - math.log(len(labels)))
        return torch.cat(out)

    def bits_per_sample(self, x: torch.Tensor, **options) -> float:
        return float(nats_to_bits_per_dim(-self.log_prob(x, **options).mean(), self.dims))

    # ---- generation -----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None, temperature: float = 1.0,
               length: int | None = None, cache: bool = True) -> torch.Tensor:
        """(n, 1, length) clips of levels, drawn sample by sample (``length``: the data's clip length).
        ``cache=False`` reruns the whole network on the prefix every step (slow; for checking)."""
        if temperature < 0:
            raise GenzooError(f"temperature must be >= 0, got {temperature}")
        length = length or self.shape[-1]
        y = self.check_condition(condition, n)
        if self.config.num_classes and y is None:
            y = torch.randint(self.config.num_classes, (n,), generator=generator, device=generator_device(generator)).to(self.device)
        threads = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)  # thousands of tiny steps: threads only add spin-waiting (measured 25x slower on 2 busy cores)
        try:
            with self._eval_mode():
                fn = self._sample_cached if cache else self._sample_plain
                return fn(n, length, y, generator, temperature)
        finally:
            torch.set_num_threads(threads)

    def _draw(self, logits: torch.Tensor, generator, temperature: float) -> torch.Tensor:
        if temperature == 0:
            return logits.argmax(1).float()
        cdf = (logits / temperature).softmax(1).cumsum(1)
        u = torch.rand(len(logits), 1, generator=generator, device=generator_device(generator)).to(cdf.device)
        return (cdf < u).sum(1).clamp(max=self.levels - 1).float()

    def _sample_plain(self, n, length, y, generator, temperature) -> torch.Tensor:
        x = torch.zeros(n, 1, length, device=self.device)
        for t in range(length):
            x[:, 0, t] = self._draw(self.logits(x[..., : t + 1], y)[..., t], generator, temperature)
        return x

    def _sample_cached(self, n, length, y, generator, temperature) -> torch.Tensor:
        x = torch.zeros(n, 1, length, device=self.device)
        c = self.config.channels
        # queues[i][:, :, t % d] holds layer i's input at step t - d (zeros before the start: the left padding)
        queues = [torch.zeros(n, c, layer.dilation, device=self.device) for layer in self.layers]
        w_in, b_in = self.input.weight[:, 0, 0], self.input.bias
        h1w, h1b = self.head1.weight[:, :, 0].t(), self.head1.bias
        h2w, h2b = self.head2.weight[:, :, 0].t(), self.head2.bias
        prev = torch.zeros(n, device=self.device)  # the shifted input at t = 0 is the padding, 0
        for t in range(length):
            h = prev[:, None] * w_in + b_in
            skips = 0
            for layer, q in zip(self.layers, queues):
                slot = t % layer.dilation
                past = q[:, :, slot].clone()
                q[:, :, slot] = h
                h, s = layer.step(h, past, y)
                skips = skips + s
            logits = torch.addmm(h2b, F.relu(torch.addmm(h1b, F.relu(skips), h1w)), h2w)
            x[:, 0, t] = self._draw(logits, generator, temperature)
            prev = to_signed_unit(x[:, 0, t], self.levels)
        return x

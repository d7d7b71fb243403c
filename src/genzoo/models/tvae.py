"""TVAE: a variational autoencoder for tables (Xu et al., 2019), with one output head per encoded block.

The encoder maps an encoded row (``genzoo.data.table``) to q(z|x) = N(mu, diag(sigma^2)); the decoder
maps z to, per block: a Gaussian over a value's offset within its mode (a learned standard deviation
per value column) and a softmax over each one-hot block (modes, missing indicators, categories).
Loss: the negative ELBO, with the reconstruction weighted by ``loss_factor`` (2 in the paper's code).

Sampling: z ~ N(0, I), offsets drawn from their Gaussians, one-hot blocks from their softmax, both
at ``temperature`` (softmax logits / T + a share-keeping bias, offset noise x T); ``SAMPLE_TEMPERATURE``
(0.3) by default.
Why not 1 (plain ancestral sampling): the decoder draws every column independently given z, and
where z pins a row down only loosely, independent draws at T = 1 blur what links the columns; a
lower T keeps each row nearer its most likely completion. Measured on diamonds (6,000 rows, 1.5
min, target ``cut``; benchmarks/tabular/tune_temperature.py, two seeds, the *validation* split):
ML efficacy (macro F1) 0.543 at T = 1, 0.595 at 0.5, 0.629 at 0.3, 0.631 at 0 (argmax, what the
ctgan package's TVAE does), quality (its pair trends from the report, before genzoo's fix) 0.904 /
0.907 / 0.905 / 0.901, detection AUC 0.838 / 0.824 / 0.835 / 0.873: 0.3 gains as much as the argmax
without its loss in detection. ``temperature=1`` gives the model's own distribution.
A temperature also pulls every block's share towards its majority (diamonds' `color` column shape:
0.95 at T = 1, 0.91 at 0.3), so by default (``keep_marginals``) each one-hot block gets the bias that
holds its share at the model's T = 1 share (``TableModel.marginal_biases``); only which rows get
which category sharpens. Measured with the fixed column-pair trends over 5 bench runs (validation
split; benchmarks/tabular/tune_temperature.py --keep-marginals, tune_temperature_marginals.json):
ML efficacy / quality / detection AUC 0.552 / 0.940 / 0.837 at T = 1, 0.600 / 0.941 / 0.839 at 0.3,
**0.619 / 0.947 / 0.828 at 0.3 with the shares kept**, 0.607 / 0.948 / 0.834 at 0.2 kept, 0.612 /
0.938 / 0.866 at 0 (argmax, where no share can be kept).
Conditions on a categorical column are met by rejection (draw rows, keep those with the value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.family import register
from genzoo.models.base import SAMPLE, Batch, ModelConfig
from genzoo.models.tabular import TableModel, device_of


SAMPLE_TEMPERATURE = 0.3  # sample()'s default (the module doc has the measurement)


@dataclass
class TVAEConfig(ModelConfig):
    latent_dim: int = 128
    hidden_widths: list[int] = field(default_factory=lambda: [128, 128])
    loss_factor: float = 2.0  # weight of the reconstruction term against the KL


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


@register("tvae", description="TVAE: table VAE with per-column heads (Gaussian offsets, softmax modes/categories)",
          data_kinds=("table",))
class TVAE(TableModel):
    config_class = TVAEConfig
    capabilities = frozenset({SAMPLE})

    def __init__(self, config: TVAEConfig):
        super().__init__(config)
        self._bind_table()
        h = config.hidden_widths
        self.encoder = _mlp([self.width, *h])
        self.to_latent = nn.Linear(h[-1], 2 * config.latent_dim)
        self.decoder = _mlp([config.latent_dim, *h[::-1]])
        self.to_data = nn.Linear(h[0], self.width)
        self.log_sigma = nn.Parameter(torch.full((len(self.value_index),), math.log(0.1)))

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # the paper's code: Adam 1e-3, weight decay 1e-5, batch 500
        return {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": min(500, max(16, data_spec["table"]["rows"] // 4)),
                "schedule": "constant", "warmup_steps": 0, "ema_decay": None, "val_every": 0, "steps": 2000}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"latent_dim": 4, "hidden_widths": [16]}

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_data(self.decoder(z))

    def loss(self, batch: Batch) -> torch.Tensor:
        x = batch.x.float()
        mu, log_var = self.to_latent(self.encoder(x)).chunk(2, 1)
        log_var = log_var.clamp(-10, 10)
        z = mu + (0.5 * log_var).exp() * batch.rng.randn_like(mu)
        raw = self.decode_raw(z)
        sigma = self.log_sigma.clamp(math.log(0.01), math.log(1.0))
        idx = self.value_index
        nll_values = (0.5 * ((x[:, idx] - torch.tanh(raw[:, idx])) / sigma.exp()) ** 2 + sigma).sum(1) if idx else x.new_zeros(len(x))
        recon = nll_values + self.block_loss(raw, x)
        kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(1)
        return (self.config.loss_factor * recon + kl).mean()

    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None,
               temperature: float = SAMPLE_TEMPERATURE, keep_marginals: bool = True) -> torch.Tensor:
        if not temperature >= 0:
            raise GenzooError(f"temperature must be 0 or more (0: the most likely category of each block), got {temperature}")
        if not isinstance(keep_marginals, bool):
            raise GenzooError(f"keep_marginals must be true or false, got {keep_marginals!r}")
        biases = self.marginal_biases(self.decode_raw, self.config.latent_dim, temperature) \
            if keep_marginals and temperature not in (0, 1) else None  # T = 0 is the argmax: no share to keep

        def draw(m, g):
            dev = device_of(g, self)
            z = torch.randn(m, self.config.latent_dim, generator=g, device=dev).to(self.device)
            raw = self.decode_raw(z)
            out = self.draw_blocks(raw, g, temperature, biases)
            idx = self.value_index
            if idx:
                sigma = self.log_sigma.clamp(math.log(0.01), math.log(1.0)).exp()
                noise = torch.randn(m, len(idx), generator=g, device=dev).to(self.device)
                out[:, idx] = (torch.tanh(raw[:, idx]) + temperature * sigma * noise).clamp(-1, 1)
            return out

        return self.conditioned(draw, n, condition, generator)

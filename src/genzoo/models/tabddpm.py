"""TabDDPM: diffusion for tables (Kotelnikov et al., 2023): Gaussian diffusion for numbers, multinomial
diffusion (Hoogeboom et al., 2021) for every one-hot block.

On the encoded row (``genzoo.data.table``): each ``value`` entry is noised as in DDPM,
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and the network predicts eps (MSE). Each one-hot block of
K categories is noised towards the uniform distribution, q(x_t | x_0) = Cat(abar_t x_0 + (1 - abar_t) / K);
the network predicts x_0's logits, and the loss is the KL between the true posterior
q(x_{t-1} | x_t, x_0) and the one with the predicted x_0 (at t = 0: x_0's negative log-likelihood),
averaged over blocks and added to the MSE, as in the paper. One MLP denoises both, given a sinusoidal
embedding of t. Cosine schedule; fewer steps than the paper's 1000 (``steps``, default 100) suit a CPU.

Sampling runs the reverse chain from N(0, I) values and uniform categories. Conditions on a
categorical column are met by rejection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from genzoo.family import register
from genzoo.models.base import SAMPLE, Batch, ModelConfig
from genzoo.models.tabular import TableModel, device_of

LOG_EPS = 1e-30


@dataclass
class TabDDPMConfig(ModelConfig):
    steps: int = 100
    hidden_widths: list[int] = field(default_factory=lambda: [256, 256, 256])
    time_dim: int = 64


def cosine_alpha_bar(steps: int) -> torch.Tensor:
    """abar_t for t = 1..steps (Nichol & Dhariwal's cosine schedule), float64."""
    s = 0.008
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
    f = torch.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = (f / f[0])[1:]
    return abar.clamp(1e-5, 1.0)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


@register("tabddpm", description="TabDDPM: Gaussian diffusion for numbers + multinomial diffusion for categories",
          data_kinds=("table",))
class TabDDPM(TableModel):
    config_class = TabDDPMConfig
    capabilities = frozenset({SAMPLE})

    def __init__(self, config: TabDDPMConfig):
        super().__init__(config)
        self._bind_table()
        abar = cosine_alpha_bar(config.steps)
        alpha = abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.register_buffer("abar", abar.float(), persistent=False)
        self.register_buffer("alpha", alpha.float(), persistent=False)
        layers, d = [], self.width + config.time_dim
        for w in config.hidden_widths:
            layers += [nn.Linear(d, w), nn.SiLU()]
            d = w
        self.net = nn.Sequential(*layers, nn.Linear(d, self.width))
        self.time_proj = nn.Sequential(nn.Linear(config.time_dim, config.time_dim), nn.SiLU())

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # the paper: AdamW 1e-3 .. 2e-3, batch 256 .. 4096, no weight decay on small tables
        return {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": min(1024, max(16, data_spec["table"]["rows"] // 4)),
                "schedule": "cosine", "warmup_steps": 0, "ema_decay": None, "val_every": 0, "steps": 2000}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"steps": 10, "hidden_widths": [16], "time_dim": 8}

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps for value entries, x_0 logits for one-hot blocks (one tensor, the row's layout)."""
        return self.net(torch.cat([x_t, self.time_proj(time_embedding(t, self.config.time_dim))], 1))

    # ---- multinomial pieces (probabilities per block) ----------------------------------------------
    def q_xt(self, x0: torch.Tensor, abar: torch.Tensor, k: int) -> torch.Tensor:
        return abar[:, None] * x0 + (1 - abar[:, None]) / k

    def posterior(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
        """q(x_{t-1} | x_t, x_0) for t >= 1 (``x0`` may be probabilities: the model's prediction)."""
        a = self.alpha[t][:, None]
        abar_prev = self.abar[(t - 1).clamp(min=0)][:, None]
        p = (a * x_t + (1 - a) / k) * (abar_prev * x0 + (1 - abar_prev) / k)
        return p / p.sum(1, keepdim=True)

    def loss(self, batch: Batch) -> torch.Tensor:
        x0 = batch.x.float()
        n = len(x0)
        t = batch.rng.randint(self.config.steps, n).to(x0.device)
        abar = self.abar[t]
        noise = batch.rng.randn_like(x0)
        gumbel = -torch.log(-torch.log(batch.rng.rand_like(x0).clamp(1e-10, 1 - 1e-7)))
        x_t = x0.clone()
        idx = self.value_index
        if idx:
            x_t[:, idx] = abar.sqrt()[:, None] * x0[:, idx] + (1 - abar).sqrt()[:, None] * noise[:, idx]
        blocks = self.onehot_blocks()
        for s, w in blocks:  # a draw from q(x_t | x_0) by Gumbel-max
            q = self.q_xt(x0[:, s : s + w], abar, w)
            x_t[:, s : s + w] = F.one_hot((q.log() + gumbel[:, s : s + w]).argmax(1), w).float()
        out = self.denoise(x_t, t)
        total = ((out[:, idx] - noise[:, idx]) ** 2).mean(1) if idx else x0.new_zeros(n)
        if blocks:
            multi = x0.new_zeros(n)
            first = t == 0
            for s, w in blocks:
                pred = torch.softmax(out[:, s : s + w], 1)
                true_post = self.posterior(x_t[:, s : s + w], x0[:, s : s + w], t, w)
                model_post = self.posterior(x_t[:, s : s + w], pred, t, w)
                kl = (true_post * (true_post.clamp_min(LOG_EPS).log() - model_post.clamp_min(LOG_EPS).log())).sum(1)
                nll = -(x0[:, s : s + w] * pred.clamp_min(LOG_EPS).log()).sum(1)
                multi = multi + torch.where(first, nll, kl)
            total = total + multi / len(blocks)
        return total.mean()

    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None) -> torch.Tensor:
        def draw(m, g):
            dev = device_of(g, self)
            idx, blocks = self.value_index, self.onehot_blocks()
            x = torch.zeros(m, self.width, device=self.device)
            if idx:
                x[:, idx] = torch.randn(m, len(idx), generator=g, device=dev).to(self.device)
            for s, w in blocks:
                k = torch.randint(w, (m,), generator=g, device=dev).to(self.device)
                x[:, s : s + w] = F.one_hot(k, w).float()
            for step in reversed(range(self.config.steps)):
                t = torch.full((m,), step, device=self.device, dtype=torch.long)
                out = self.denoise(x, t)
                new = x.clone()
                if idx:  # the DDPM mean, plus noise but at the last step
                    a, abar = self.alpha[step], self.abar[step]
                    mean = (x[:, idx] - (1 - a) / (1 - abar).sqrt() * out[:, idx]) / a.sqrt()
                    if step > 0:
                        var = (1 - a) * (1 - self.abar[step - 1]) / (1 - abar)
                        mean = mean + var.sqrt() * torch.randn(m, len(idx), generator=g, device=dev).to(self.device)
                    new[:, idx] = mean.clamp(-3, 3)
                for s, w in blocks:
                    pred = torch.softmax(out[:, s : s + w].double(), 1)
                    p = pred if step == 0 else self.posterior(x[:, s : s + w].double(), pred, t, w)
                    k = torch.multinomial(p.to(dev), 1, generator=g).squeeze(1).to(self.device)
                    new[:, s : s + w] = F.one_hot(k, w).float()
                x = new
            if idx:
                x[:, idx] = x[:, idx].clamp(-1, 1)
            return x

        return self.conditioned(draw, n, condition, generator)

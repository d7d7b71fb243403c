"""CTGAN: a conditional Wasserstein GAN for tables (Xu et al., 2019).

- Condition vector: one one-hot block per categorical column, all zero but the chosen column's
  chosen category. The generator takes (z, cond); a cross-entropy term makes its output hold the
  asked category. The critic sees (row, cond).
- Training-by-sampling with log-frequency: CTGAN draws a column uniformly, then a category with
  probability proportional to log(1 + count), then a real row holding it. Here each real row of the
  batch gives its own condition (a column drawn uniformly, the row's category in it) and every
  term of the row is weighted by p_log(category) / p_data(category): the same objective in
  expectation, and each step stays a function of the global batch (2 processes = 1, exact resume).
- PacGAN: the critic judges ``pac`` rows at once (concatenated), which penalises mode collapse.
- WGAN-GP: critic loss D(fake) - D(real) + 10 * gradient penalty on interpolates; Adam 2e-4,
  betas (0.5, 0.9), as in the paper's code.
- Output heads: tanh for values, Gumbel-softmax (tau 0.2) for one-hot blocks while training;
  sampling draws each one-hot block from its softmax.

Conditional sampling (``condition="col=value"``) puts the value in the condition vector and in the
row (the generator's conditional, no rejection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from genzoo.data import table as tables
from genzoo.family import register
from genzoo.models.base import SAMPLE, Batch, ModelConfig, Updater
from genzoo.models.tabular import TableModel, device_of


@dataclass
class CTGANConfig(ModelConfig):
    noise_dim: int = 128
    generator_widths: list[int] = field(default_factory=lambda: [256, 256])
    critic_widths: list[int] = field(default_factory=lambda: [256, 256])
    pac: int = 10
    critic_dropout: float = 0.5
    gp_weight: float = 10.0
    tau: float = 0.2  # Gumbel-softmax temperature while training


class Residual(nn.Module):
    """CTGAN's generator block: the input concatenated with ReLU(LayerNorm(Linear(input))).
    LayerNorm where the paper has BatchNorm: it mixes no rows (so Opacus and 2 processes = 1 hold)."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.fc, self.norm = nn.Linear(i, o), nn.LayerNorm(o)

    def forward(self, x):
        return torch.cat([torch.relu(self.norm(self.fc(x))), x], 1)


@register("ctgan", description="CTGAN: conditional WGAN-GP for tables, training-by-sampling (log-frequency), PacGAN",
          data_kinds=("table",))
class CTGAN(TableModel):
    config_class = CTGANConfig
    capabilities = frozenset({SAMPLE})
    condition_method = "conditional"

    def __init__(self, config: CTGANConfig):
        super().__init__(config)
        spec = self._bind_table()
        self.discrete = tables.discrete_blocks(spec)  # (start, width, column) in the encoded row
        self.cond_width = sum(w for _, w, _ in self.discrete)
        counts = [torch.tensor(spec["columns"][c]["counts"], dtype=torch.float64) for _, _, c in self.discrete]
        # log-frequency over data frequency, per category: the weight that turns data-frequency conditions into CTGAN's
        self.register_buffer("cond_weight", torch.cat([torch.nan_to_num((torch.log1p(k) / torch.log1p(k).sum()) / (k / k.sum())) for k in counts]).float()
                             if counts else torch.zeros(0), persistent=False)
        self.register_buffer("cond_freq", torch.cat([k / k.sum() for k in counts]).float() if counts else torch.zeros(0), persistent=False)
        dims, layers = config.noise_dim + self.cond_width, []
        for w in config.generator_widths:
            layers.append(Residual(dims, w))
            dims += w
        self.generator = nn.Sequential(*layers, nn.Linear(dims, self.width))
        crit, d = [], config.pac * (self.width + self.cond_width)
        for w in config.critic_widths:
            crit.append(nn.Linear(d, w))
            d = w
        crit.append(nn.Linear(d, 1, bias=False))  # no bias: it cancels in every Wasserstein term
        self.critic = nn.ModuleList(crit)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        return {"lr": 2e-4, "betas": (0.5, 0.9), "weight_decay": 1e-6, "batch_size": 500 if data_spec["table"]["rows"] >= 2000 else 100,
                "schedule": "constant", "warmup_steps": 0, "ema_decay": None, "grad_clip": None, "val_every": 0, "steps": 2000}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"noise_dim": 4, "generator_widths": [16], "critic_widths": [16], "pac": 2}

    def configure_optimizers(self, lr: float, weight_decay: float, betas=(0.5, 0.9)) -> dict[str, torch.optim.Optimizer]:
        return {"critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas, weight_decay=weight_decay),
                "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)}

    # ---- the two players ------------------------------------------------------------------------
    def activate(self, raw: torch.Tensor, gumbel: torch.Tensor | None) -> torch.Tensor:
        """Values through tanh; one-hot blocks through a Gumbel-softmax (training) or a softmax."""
        parts = []
        for kind, s, w, c in self.blocks:
            r = raw[:, s : s + w]
            if kind == "value":
                parts.append(torch.tanh(r))
            elif gumbel is not None:
                parts.append(torch.softmax((r + gumbel[:, s : s + w]) / self.config.tau, 1))
            else:
                parts.append(torch.softmax(r, 1))
        return torch.cat(parts, 1)

    def critique(self, rows: torch.Tensor, cond: torch.Tensor, rng=None) -> torch.Tensor:
        """The critic's score of each pack of ``pac`` consecutive rows. Dropout (training, ``rng`` a
        BatchRandom) draws a mask per row and uses each pack's first row's: the masks then split
        across processes as the rows do."""
        pac = self.config.pac
        h = torch.cat([rows, cond], 1)
        h = h.reshape(-1, pac * h.shape[1])
        for layer in self.critic[:-1]:
            h = F.leaky_relu(layer(h), 0.2)
            p = self.config.critic_dropout
            if rng is not None and p > 0:
                keep = rng.rand(len(rows), h.shape[1]).reshape(-1, pac, h.shape[1])[:, 0] >= p
                h = h * keep / (1 - p)
        return self.critic[-1](h).squeeze(1)

    def conditions(self, x: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each real row's condition (a column drawn uniformly, the row's category in it), the
        log-frequency weight of that category, and the block (start in cond, width) per row."""
        n = len(x)
        cond = x.new_zeros(n, self.cond_width)
        if not self.discrete:
            return cond, x.new_ones(n), None
        pick = batch.rng.randint(len(self.discrete), n)
        weight = x.new_ones(n)
        at = 0
        spans = []
        for j, (s, w, _) in enumerate(self.discrete):
            rows = pick == j
            k = x[:, s : s + w].argmax(1)
            cond[rows, at : at + w] = F.one_hot(k[rows], w).to(x.dtype)
            weight = torch.where(rows, self.cond_weight[at + k], weight)
            spans.append((at, s, w))
            at += w
        return cond, weight, (pick, spans)

    def generate(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([z, cond], 1))

    def pack_weight(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.reshape(-1, self.config.pac).mean(1)

    def training_step(self, batch: Batch, step: int, opt: Updater) -> dict[str, float]:
        x = batch.x.float()
        n = len(x) - len(x) % self.config.pac
        if n == 0:
            raise ValueError(f"a batch of {len(x)} rows holds no pack of pac={self.config.pac}; raise --batch-size")
        x = x[:n]
        cond, weight, picked = self.conditions(x, batch)
        wp = self.pack_weight(weight)
        z = batch.rng.randn(n, self.config.noise_dim)
        gumbel = -torch.log(-torch.log(batch.rng.rand(n, self.width).clamp(1e-10, 1 - 1e-7)))
        # critic: W-distance estimate, weighted per pack, plus the gradient penalty
        fake = self.activate(self.generate(z, cond), gumbel).detach()
        real_score, fake_score = self.critique(x, cond, batch.rng), self.critique(fake, cond, batch.rng)
        # one mixing weight per pack, drawn per row (the first row's) so the draw splits across processes like the batch
        eps = batch.rng.rand(n, 1).reshape(-1, self.config.pac, 1)[:, :1].expand(-1, self.config.pac, 1).reshape(n, 1)
        mixed = (eps * x + (1 - eps) * fake).requires_grad_(True)
        grads = torch.autograd.grad(self.critique(mixed, cond, batch.rng).sum(), mixed, create_graph=True)[0]
        gp = ((grads.reshape(-1, self.config.pac * self.width).norm(dim=1) - 1) ** 2)
        critic_loss = (wp * (fake_score - real_score)).mean() + self.config.gp_weight * gp.mean()
        opt.step("critic", critic_loss)
        # generator: fool the critic and honour the condition
        raw = self.generate(z, cond)
        gen_score = self.critique(self.activate(raw, gumbel), cond, batch.rng)
        gen_loss = -(wp * gen_score).mean()
        cond_loss = torch.zeros((), device=x.device)
        if picked is not None:
            pick, spans = picked
            for j, (at, s, w) in enumerate(spans):
                rows = pick == j
                ce = F.cross_entropy(raw[:, s : s + w], cond[:, at : at + w].argmax(1), reduction="none")
                cond_loss = cond_loss + (ce * rows * weight).sum() / n
        opt.step("generator", gen_loss + cond_loss)
        return {"critic_loss": float(critic_loss.detach()), "generator_loss": float(gen_loss.detach()),
                "cond_loss": float(cond_loss.detach()), "gradient_penalty": float(gp.mean().detach())}

    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        dev = device_of(generator, self)
        asked = self.check_condition(condition, n)
        cond = torch.zeros(n, self.cond_width, device=self.device)
        if asked is not None:
            start, w, k = asked
            at = sum(bw for s, bw, _ in self.discrete if s < start)
            cond[:, at + k] = 1
        elif self.discrete:  # unconditional: a column uniformly, its category at the data's frequency
            pick = torch.randint(len(self.discrete), (n,), generator=generator, device=dev).to(self.device)
            at = 0
            for j, (s, w, _) in enumerate(self.discrete):
                k = torch.multinomial(self.cond_freq[at : at + w].to(dev), n, replacement=True, generator=generator).to(self.device)
                rows = pick == j
                cond[rows, at + k[rows]] = 1
                at += w
        z = torch.randn(n, self.config.noise_dim, generator=generator, device=dev).to(self.device)
        raw = self.generate(z, cond)
        out = self.draw_blocks(raw, generator, temperature)
        for kind, s, w, c in self.blocks:
            if kind == "value":
                out[:, s] = torch.tanh(raw[:, s])
        if asked is not None:  # the asked category, exactly
            start, w, k = asked
            out[:, start : start + w] = F.one_hot(torch.full((n,), k, device=self.device), w).float()
        return out


"""A tiny 2-D GAN used to prove the Trainer's contract for multi-optimizer families:
two optimizers, several critic updates per generator update, and a replay
buffer that is training state, not weights: it must survive checkpoints and
resume (per process, in the trainer state) yet stay out of model.safetensors
and the EMA copy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from genzoo.models.base import SAMPLE, GenerativeModel, ModelConfig
from genzoo.family import register


@dataclass
class TwoOptConfig(ModelConfig):
    noise_dim: int = 4
    width: int = 32
    critic_steps: int = 2
    buffer_size: int = 64


@register("test-twoopt", description="test-only 2-D GAN with two optimizers", data_kinds=("points",))
class TwoOptimizerGAN(GenerativeModel):
    config_class = TwoOptConfig
    capabilities = frozenset({SAMPLE})

    def __init__(self, config: TwoOptConfig):
        super().__init__(config)
        c = config
        self.generator = nn.Sequential(nn.Linear(c.noise_dim, c.width), nn.SiLU(), nn.Linear(c.width, 2))
        self.critic = nn.Sequential(nn.Linear(2, c.width), nn.SiLU(), nn.Linear(c.width, 1))
        self.replay = torch.zeros(c.buffer_size, 2)  # a plain tensor: not a parameter, not a buffer
        self.replay_count = 0

    def training_state(self):
        return {"replay": self.replay.clone(), "replay_count": self.replay_count}

    def load_training_state(self, state):
        self.replay, self.replay_count = state["replay"].clone(), int(state["replay_count"])

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves the replay buffer with the weights
        self.replay = fn(self.replay)
        return super()._apply(fn, *args, **kwargs)

    def configure_optimizers(self, lr, weight_decay, betas=(0.5, 0.999)):
        return {
            "critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.999)),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999)),
        }

    def training_step(self, batch, step, opt):
        x, n = batch.x, len(batch.x)
        for _ in range(self.config.critic_steps):
            fake = self.generator(batch.rng.randn(n, self.config.noise_dim)).detach()
            # Replayed fakes get their own mean so the loss splits evenly over processes.
            d_real, d_fake, d_old = self.critic(x), self.critic(fake), self.critic(self.replay)
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean() + 0.5 * F.softplus(d_old).mean()
            opt.step("critic", loss_d)
        fake = self.generator(batch.rng.randn(n, self.config.noise_dim))
        loss_g = F.softplus(-self.critic(fake)).mean()
        opt.step("generator", loss_g)
        with torch.no_grad():  # shared noise (not per-example), so every process stores the same fakes
            slot = self.replay_count % self.config.buffer_size
            k = min(8, self.config.buffer_size - slot)
            z = torch.randn(k, self.config.noise_dim, generator=batch.rng.generator, device=x.device)
            self.replay[slot : slot + k] = self.generator(z)
            self.replay_count += k
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    def sample(self, n, *, condition=None, generator=None, **options):
        z = torch.randn(n, self.config.noise_dim, generator=generator, device=self.device)
        return self.generator(z)

"""A time- (and class-) conditioned residual MLP: the denoiser for low-dimensional points."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn.dropout import BatchDropout
from genzoo.nn.embeddings import ConditionEmbedding


class MLPBlock(nn.Module):
    """x + fc2(SiLU(fc1(SiLU(LN(x))) + emb)): pre-norm residual block with the condition added inside."""

    def __init__(self, width: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb_proj = nn.Linear(emb_dim, width)
        self.dropout = BatchDropout(dropout)  # masks from the batch's random stream
        self.fc2 = nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)  # start as the identity
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.fc1(F.silu(self.norm(x))) + self.emb_proj(emb)
        return x + self.fc2(self.dropout(F.silu(h)))


class ResidualMLP(nn.Module):
    """Denoiser ``(x_t, t, y) -> prediction`` for (n, dims) inputs."""

    def __init__(self, dims: int, width: int = 256, blocks: int = 4, emb_dim: int | None = None, num_classes: int = 0, dropout: float = 0.0,
                 text_dim: int = 0):
        super().__init__()
        emb_dim = emb_dim or width
        self.embedding = ConditionEmbedding(emb_dim, num_classes, frequency_dim=min(emb_dim, 128), text_dim=text_dim)
        self.inp = nn.Linear(dims, width)
        self.blocks = nn.ModuleList([MLPBlock(width, emb_dim, dropout) for _ in range(blocks)])
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dims)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = F.silu(self.embedding(t, y))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h)))

"""Embeddings of the diffusion time step and of class labels.

``ConditionEmbedding`` turns (t, y) into one vector that every block of a
denoiser adds to (or uses to scale and shift) its features. Class ``y`` uses
one extra learned "null" row, index ``num_classes``, which stands for "no
label": training sometimes swaps the label for it (label dropout), so one
network learns both p(x | y) and p(x), as classifier-free guidance needs.

Text conditioning (``text_dim`` > 0) takes a sentence vector instead of a class id: a frozen text
encoder's embedding of the prompt, (n, text_dim), mapped by a small MLP and added like a class
row. The "no prompt" condition is whatever vector the model feeds for it (``DiffusionModel`` learns
one, ``null_text``), so the same label-dropout trick gives classifier-free guidance on prompts.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sin/cos features of (possibly fractional) time steps: (n,) -> (n, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:  # odd widths get a zero column so the output is exactly ``dim`` wide
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class ConditionEmbedding(nn.Module):
    """(t, optional class) -> (n, dim) vector: sinusoidal time features through a small MLP, plus a class row."""

    def __init__(self, dim: int, num_classes: int = 0, frequency_dim: int | None = None, text_dim: int = 0):
        super().__init__()
        if num_classes and text_dim:
            raise ValueError("condition on class labels or on text vectors, not both")
        self.frequency_dim = frequency_dim or dim
        self.num_classes = num_classes
        self.time_mlp = nn.Sequential(nn.Linear(self.frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        # Row ``num_classes`` is the learned null class (no label).
        self.class_embedding = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None
        self.text_dim = text_dim
        # LayerNorm first: sentence vectors are unit-length (components ~ 1/sqrt(384) = 0.05) and prompts for
        # different digits differ in a small part of them; standardised, the first layer sees that part at
        # unit scale. Measured on captioned digits (300 steps, 16/32-channel UNet, 100 prompts): the share of
        # samples read as the asked digit went from 0.10 to 0.64 (w=1) and from 0.24 to 0.94 (CFG w=3).
        self.text_projection = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, dim), nn.SiLU(),
                                             nn.Linear(dim, dim)) if text_dim else None

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t, self.frequency_dim))
        if self.text_projection is not None:
            if y is None or y.ndim != 2 or y.shape[1] != self.text_dim:
                raise ValueError(f"this embedding takes (n, {self.text_dim}) text vectors, got {None if y is None else tuple(y.shape)}")
            return emb + self.text_projection(y.to(emb.dtype))
        if self.class_embedding is None:
            if y is not None:
                raise ValueError("this embedding was built without classes (num_classes=0) but got labels")
        else:
            if y is None:
                y = torch.full_like(t, self.null_class, dtype=torch.long)
            emb = emb + self.class_embedding(y)
        return emb

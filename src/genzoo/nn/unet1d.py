"""A 1-D UNet for waveforms: the denoiser of diffusion on audio (DiffWave's task, a UNet's shape).

Why a 1-D UNet rather than the 2-D one on a reshaped clip: neighbouring samples of a waveform are
neighbours in time only; folding a clip into rows would make samples a row apart look adjacent.
Each level downsamples by ``factor`` (4: 8000 samples -> 2000 -> 500 -> 125), so the middle, where
self-attention runs, sees the whole second at 64 ms resolution, while the cost stays that of a few
convolutions at full rate. Blocks are conditioned on one (time, class) embedding through the
scale and shift of their second GroupNorm, as in ``genzoo.nn.unet``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn.dropout import BatchDropout
from genzoo.nn.embeddings import ConditionEmbedding
from genzoo.nn.unet import group_norm


class ResBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, kernel: int = 5):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv1d(cin, cout, kernel, padding=kernel // 2)
        self.emb_proj = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = group_norm(cout)
        self.dropout = BatchDropout(dropout)
        self.conv2 = nn.Conv1d(cout, cout, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv2.weight)  # starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.shortcut = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb_proj(emb)[:, :, None].chunk(2, dim=1)
        h = self.conv2(self.dropout(F.silu(self.norm2(h) * (1 + scale) + shift)))
        return self.shortcut(x) + h


class Attention1d(nn.Module):
    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t = x.shape
        q, k, v = self.qkv(self.norm(x).transpose(1, 2)).view(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, c)
        return x + self.out(a).transpose(1, 2)


class UNet1d(nn.Module):
    """Denoiser ``(x_t, t, y) -> prediction`` for (N, C, T) waveforms; T divisible by factor^(levels-1)."""

    def __init__(self, in_channels: int = 1, channels=(32, 64, 96, 128), factor: int = 4, num_classes: int = 0,
                 dropout: float = 0.0, heads: int = 4, mid_attention: bool = True):
        super().__init__()
        channels = tuple(channels)
        self.factor, self.levels = factor, len(channels)
        emb_dim = 4 * channels[0]
        self.embedding = ConditionEmbedding(emb_dim, num_classes, frequency_dim=channels[0])
        self.stem = nn.Conv1d(in_channels, channels[0], 5, padding=2)
        self.down = nn.ModuleList(ResBlock1d(channels[max(i - 1, 0)] if i else channels[0], c, emb_dim, dropout)
                                  for i, c in enumerate(channels))
        self.downsample = nn.ModuleList(nn.Conv1d(c, c, factor, stride=factor) for c in channels[:-1])
        width = channels[-1]
        self.mid1 = ResBlock1d(width, width, emb_dim, dropout)
        self.mid_attention = Attention1d(width, heads) if mid_attention and width % heads == 0 else nn.Identity()
        self.mid2 = ResBlock1d(width, width, emb_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(self.levels)):
            c = channels[level]
            self.up.append(ResBlock1d(2 * c if level == self.levels - 1 else c + c, c, emb_dim, dropout))
            if level > 0:
                self.upsample.append(nn.ConvTranspose1d(c, channels[level - 1], factor, stride=factor))
        self.out_norm = group_norm(channels[0])
        self.out_conv = nn.Conv1d(channels[0], in_channels, 5, padding=2)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-1] % self.factor ** (self.levels - 1):
            raise ValueError(f"UNet1d with {self.levels} levels needs T divisible by {self.factor ** (self.levels - 1)}, got {x.shape[-1]}")
        emb = F.silu(self.embedding(t, y))
        h = self.stem(x)
        skips = []
        for level in range(self.levels):
            h = self.down[level](h, emb)
            skips.append(h)
            if level < self.levels - 1:
                h = self.downsample[level](h)
        h = self.mid2(self.mid_attention(self.mid1(h, emb)), emb)
        for i in range(self.levels):
            h = self.up[i](torch.cat([h, skips.pop()], dim=1), emb)
            if i < self.levels - 1:
                h = self.upsample[i](h)
        return self.out_conv(F.silu(self.out_norm(h)))

"""Vision transformers: patches as tokens (ViT, Dosovitskiy et al. 2021) and a diffusion
denoiser built the same way (DiT, Peebles & Xie 2023).

An image (C, H, W) is cut into non-overlapping p x p patches, each flattened to a token of
C*p*p values in row-major patch order; a linear map and a learned position vector per patch
turn them into the transformer's width. The encoder is ``genzoo.nn.transformer.Block`` with
bidirectional attention (``causal=False``): the same code as GPT and BERT.

The DiT block conditions on one (time, class) vector c by *adaptive layer norm*: the norms
have no learned gain or bias; instead a linear map of c gives, per block, a shift, a scale and
a gate for the attention branch and the same three for the MLP branch:

    x = x + gate_a * Attn(LN(x) * (1 + scale_a) + shift_a)
    x = x + gate_m * MLP (LN(x) * (1 + scale_m) + shift_m)

The map is zero-initialised ("adaLN-Zero"), so every gate is 0 and every block starts as the
identity; Peebles & Xie found this the best of the conditioning schemes they compared
(in-context tokens, cross-attention, adaLN, adaLN-Zero). The output layer is also zero-initialised, so an
untrained denoiser predicts 0, the mean of the noise it regresses on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.nn.embeddings import ConditionEmbedding
from genzoo.nn.transformer import Block, CausalSelfAttention, GeluMLP


# ---- patches ------------------------------------------------------------------
def _check_patch(h: int, w: int, patch: int) -> None:
    if patch < 1 or h % patch or w % patch:
        raise GenzooError(f"patch size {patch} must divide the image's height and width ({h}x{w}); pick e.g. 2 or 4 for 8x8")


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, (H/p)*(W/p), C*p*p): patches in row-major order, each flattened as (C, p, p)."""
    n, c, h, w = x.shape
    _check_patch(h, w, patch)
    x = x.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: torch.Tensor, patch: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of ``patchify``: (N, L, C*p*p) -> (N, C, H, W) for ``shape`` = (C, H, W)."""
    c, h, w = shape
    _check_patch(h, w, patch)
    n, length, dim = tokens.shape
    if length != (h // patch) * (w // patch) or dim != c * patch * patch:
        raise GenzooError(f"{length} tokens of {dim} values do not tile a {shape} image with patch {patch}")
    x = tokens.reshape(n, h // patch, w // patch, c, patch, patch)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


class PatchEmbedding(nn.Module):
    """Image -> (N, L, width) tokens: a linear map of each flattened patch plus a learned position vector."""

    def __init__(self, shape: tuple[int, int, int], patch: int, width: int):
        super().__init__()
        c, h, w = shape
        _check_patch(h, w, patch)
        self.shape, self.patch = tuple(shape), patch
        self.num_patches = (h // patch) * (w // patch)
        self.proj = nn.Linear(c * patch * patch, width)
        # std 0.02 as in ViT/BERT: small next to the patch projection, so the content dominates at init
        self.position = nn.Parameter(0.02 * torch.randn(1, self.num_patches, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise GenzooError(f"expected images of shape {self.shape}, got {tuple(x.shape[1:])}")
        return self.proj(patchify(x, self.patch)) + self.position


# ---- ViT encoder ----------------------------------------------------------------
class ViTEncoder(nn.Module):
    """Patch embedding, ``depth`` pre-norm bidirectional transformer blocks, a final LayerNorm.

    Returns the (N, L, width) token states; a classifier pools them (mean over patches:
    no class token, one thing fewer to learn on 1,000 images)."""

    def __init__(self, shape=(1, 8, 8), patch: int = 2, width: int = 64, depth: int = 4, heads: int = 4,
                 mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise GenzooError(f"width {width} does not split into {heads} heads")
        self.embed = PatchEmbedding(shape, patch, width)
        self.blocks = nn.ModuleList(
            Block(width, heads, heads, width // heads, mlp_ratio * width, dropout=dropout,
                  qkv_bias=True, out_bias=True, mlp_bias=True, causal=False)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)


# ---- DiT denoiser -----------------------------------------------------------------
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift, with per-example (N, width) shift and scale broadcast over tokens."""
    return torch.addcmul(shift[:, None], x, 1 + scale[:, None])


class DiTBlock(nn.Module):
    """Bidirectional attention and a GELU MLP, each gated and modulated by the condition (adaLN-Zero)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = CausalSelfAttention(width, heads, heads, width // heads, qkv_bias=True, out_bias=True, causal=False)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = GeluMLP(width, mlp_ratio * width)
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)  # adaLN-Zero: gates 0, so the block is the identity at init
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``cond``: the SiLU-activated (N, width) condition vector."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(cond).chunk(6, dim=1)
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class DiT(nn.Module):
    """Denoiser ``(x_t, t, y) -> prediction`` of x_t's shape, a drop-in for ``genzoo.nn.unet.UNet``.

    ``num_classes`` > 0 adds the learned null class (index ``num_classes``) of
    ``ConditionEmbedding``, which classifier-free guidance uses."""

    def __init__(self, shape=(1, 8, 8), patch: int = 2, width: int = 128, depth: int = 4, heads: int = 4,
                 num_classes: int = 0, mlp_ratio: int = 4, text_dim: int = 0):
        super().__init__()
        if width % heads:
            raise GenzooError(f"DiT width {width} does not split into {heads} heads")
        self.shape, self.patch = tuple(shape), patch
        self.embed = PatchEmbedding(self.shape, patch, width)
        self.condition = ConditionEmbedding(width, num_classes, text_dim=text_dim)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Linear(width, 2 * width)  # final shift and scale (no gate)
        self.out_proj = nn.Linear(width, self.shape[0] * patch * patch)
        for layer in (self.out_modulation, self.out_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def tokens(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embedded input tokens, tokens after the blocks, activated condition): what tests inspect."""
        cond = F.silu(self.condition(t, y))
        h0 = self.embed(x)
        h = h0
        for block in self.blocks:
            h = block(h, cond)
        return h0, h, cond

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _, h, cond = self.tokens(x, t, y)
        shift, scale = self.out_modulation(cond).chunk(2, dim=1)
        return unpatchify(self.out_proj(modulate(self.out_norm(h), shift, scale)), self.patch, self.shape)


__all__ = ["DiT", "DiTBlock", "PatchEmbedding", "ViTEncoder", "modulate", "patchify", "unpatchify"]

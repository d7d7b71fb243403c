"""Differentiable augmentation for GAN discriminators (DiffAugment, Zhao et al. 2020).

With little data (digits has 1000 training images) a discriminator memorises
the real set and its gradients stop telling the generator anything useful.
DiffAugment applies the *same family* of random transformations T to real and
generated images before the discriminator sees them, D(T(x)), in both
players' updates. Every transformation is differentiable in the image, so the
generator's gradient flows through T; and since fakes are augmented too, the
generator is not pushed to produce augmented-looking images.

Policies (comma-separated in ``policy``), for images in [-1, 1]:

- ``brightness``: add U(-0.5, 0.5) (the paper's range on [-1, 1] images);
- ``contrast``: scale around the image mean by U(0.5, 1.5);
- ``translation``: shift by whole pixels, up to ``TRANSLATION_RATIO`` of the
  side (1/8: one pixel on 8x8 digits), filling with the background value;
- ``cutout``: set a square of ``CUTOUT_RATIO`` of the side to the background
  (0.25: 2x2 on 8x8 digits, where the paper's 0.5 would blank a quarter of a
  digit of a few strokes).

Colour saturation is left out: genzoo's digits have one channel. Random
numbers come from ``uniform(n, *shape)``, a callable returning U[0, 1)
draws per example (the Trainer's ``BatchRandom.rand``), so an augmented step
splits across processes and resumes exactly like the rest of the noise.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from genzoo.core.errors import GenzooError

TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 0.25
POLICIES = ("brightness", "contrast", "translation", "cutout")

Uniform = Callable[..., torch.Tensor]  # uniform(n, *shape) -> U[0, 1) of shape (n, *shape)


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout"`` -> ("translation", "cutout"); refuses unknown names."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise GenzooError(f"unknown DiffAugment policy {bad}; valid: {', '.join(POLICIES)} (comma-separated)")
    return names


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...], uniform: Uniform, background: float = -1.0) -> torch.Tensor:
    """Apply each transformation of ``policy`` to a batch of (N, C, H, W) images, in order."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    if names and x.ndim != 4:
        raise GenzooError(f"DiffAugment works on (N, C, H, W) images, got shape {tuple(x.shape)}; turn it off for points")
    for name in names:
        x = _TRANSFORMS[name](x, uniform, background)
    return x


def _u(uniform: Uniform, x: torch.Tensor, *shape: int) -> torch.Tensor:
    return uniform(len(x), *shape).to(x)


def _brightness(x, uniform, background):
    return x + (_u(uniform, x, 1, 1, 1) - 0.5)


def _contrast(x, uniform, background):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_u(uniform, x, 1, 1, 1) + 0.5) + mean


def _translation(x, uniform, background):
    n, _, h, w = x.shape
    rh, rw = max(1, round(h * TRANSLATION_RATIO)), max(1, round(w * TRANSLATION_RATIO))
    u = _u(uniform, x, 2)
    dy = (u[:, 0] * (2 * rh + 1)).floor().long() - rh  # uniform over -r..r
    dx = (u[:, 1] * (2 * rw + 1)).floor().long() - rw
    padded = F.pad(x, (rw, rw, rh, rh), value=background)
    rows = (torch.arange(h, device=x.device)[None, :] + rh - dy[:, None]).clamp(0, h + 2 * rh - 1)  # (n, h)
    cols = (torch.arange(w, device=x.device)[None, :] + rw - dx[:, None]).clamp(0, w + 2 * rw - 1)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # gather pixel (rows[i, r], cols[i, c]) of padded image i: an index, so the gradient reaches x
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def _cutout(x, uniform, background):
    n, _, h, w = x.shape
    sh, sw = max(1, round(h * CUTOUT_RATIO)), max(1, round(w * CUTOUT_RATIO))
    u = _u(uniform, x, 2)
    top = (u[:, 0] * (h - sh + 1)).floor().long()  # the square lies inside the image
    left = (u[:, 1] * (w - sw + 1)).floor().long()
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < top[:, None] + sh)  # (n, h)
    in_cols = (xs >= left[:, None]) & (xs < left[:, None] + sw)  # (n, w)
    hole = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (n, 1, h, w)
    return torch.where(hole, torch.full_like(x, background), x)


_TRANSFORMS = {"brightness": _brightness, "contrast": _contrast, "translation": _translation, "cutout": _cutout}


def torch_uniform(generator: torch.Generator | None = None) -> Uniform:
    """A ``uniform`` callable drawing from ``generator`` (outside the Trainer: tests, notebooks)."""

    def uniform(n: int, *shape: int) -> torch.Tensor:
        return torch.rand(n, *shape, generator=generator)

    return uniform

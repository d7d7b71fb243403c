"""Random affine maps of images (rotation, scaling, shift) with their draws given.

The digits evaluator trains with it (``genzoo.eval.evaluator.random_affine``), and so do the ViT
classifier and CLIP, which draw ``u`` from the batch's random stream (``BatchRandom.rand``) so that
an augmented step splits across processes and resumes exactly like the rest of the noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def affine_warp(x: torch.Tensor, u: torch.Tensor, max_rotation_deg: float, max_scale: float, max_shift: float) -> torch.Tensor:
    """Rotate, scale and shift each image of ``x`` (N, C, H, W) in [-1, 1]; -1 (the background) fills the
    border. ``u`` (N, 4) in [-1, 1] holds each image's rotation, scaling and x/y shift as shares of their
    maxima (degrees, 1 +- max_scale, pixels)."""
    angle = u[:, 0] * math.radians(max_rotation_deg)
    scale = 1 + u[:, 1] * max_scale
    shift = u[:, 2:] * (2 * max_shift / x.shape[-1])  # pixels -> normalised coords
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample pads with zeros; shift so that zero is the background.
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1

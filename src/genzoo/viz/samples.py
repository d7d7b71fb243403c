"""Pictures people would rather look at than read: sample grids, loss curves, point clouds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def save_square_panels(fig, axes, path: Path, title: str = "") -> Path:
    """Finish side-by-side 2-D panels (equal aspect, no ticks, optional title) and write the PNG."""
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _matplotlib().close(fig)
    return path


def image_grid(x: torch.Tensor, levels: int | None, nrow: int | None = None, scale: int = 4, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) levels (or values in [0, 1]) -> one uint8 image of tiles, upscaled for viewing."""
    x = x.detach().float().cpu()
    x = x / (levels - 1) if levels else x
    x = x.clamp(0, 1)
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad) * 0.5
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = x[i]
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return arr[..., 0] if c == 1 else arr


def save_image_grid(x: torch.Tensor, path: str | Path, levels: int | None, nrow: int | None = None, scale: int = 4) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(x, levels, nrow, scale)).save(path)
    return path


def save_points(samples: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None, title: str = "") -> Path:
    plt = _matplotlib()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [("data", reference), ("samples", samples)] if reference is not None else [("samples", samples)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (name, pts) in zip(axes[0], panels):
        pts = pts.detach().cpu().numpy()
        ax.hist2d(pts[:, 0], pts[:, 1], bins=120, range=[[-4.5, 4.5], [-4.5, 4.5]], cmap="magma")
        ax.set_title(name)
    return save_square_panels(fig, axes[0], path, title)


def save_samples(x: torch.Tensor, path: str | Path, data_spec: dict, reference: torch.Tensor | None = None) -> Path:
    """A grid for images, a 2-D histogram for points, a CSV of decoded rows for a table (``path`` with suffix .csv)."""
    if data_spec.get("kind") == "table":
        from genzoo.data.table import write_csv

        return write_csv(x, Path(path).with_suffix(".csv"), data_spec["table"])
    if data_spec.get("kind") == "audio":  # a WAV of the clips and their spectrograms (path: .wav or .png)
        from genzoo.viz.audio import save_audio

        return save_audio(x, path, data_spec)
    if data_spec.get("kind") == "points" or x.ndim == 2:
        if x.shape[-1] != 2:
            raise ValueError(f"can only plot 2-D points, got shape {tuple(x.shape)}")
        return save_points(x, path, reference)
    return save_image_grid(x, path, data_spec.get("levels"))


def save_loss_curve(metrics_jsonl: str | Path, path: str | Path) -> Path | None:
    """Every numeric training metric against step, one panel each."""
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    val = [r for r in rows if r.get("event") == "val"]
    rows = [r for r in rows if r.get("event", "train") == "train"]
    if not rows:
        return None
    skip = {"step", "time", "event", "lr", "samples_per_s"}
    keys = [k for k in rows[-1] if k not in skip and isinstance(rows[-1][k], (int, float))]
    plt = _matplotlib()
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [r.get(k, float("nan")) for r in rows], label="train")
        if k == "loss" and val:  # the validation loss is the same objective on held-out data
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
            ax.legend()
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)

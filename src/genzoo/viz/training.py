"""Diagnostics pictures for families whose training is a game or a sampler loop (GANs, EBMs).

- ``save_player_curves``: the losses of both players (and any score pair the
  family logs, such as D(real) and D(fake)) on shared axes, from
  ``metrics.jsonl``: a discriminator winning outright (loss_d -> 0 while
  loss_g climbs) or oscillating losses are visible at a glance.
- ``save_progress_strip``: the sample grids the Trainer wrote during training
  (``samples/step_*.png``, every ``sample_every`` steps) side by side, so
  mode collapse or divergence shows where it began.

Reads files only (no model imports), so every family can call it from ``save_plots``.
"""

from __future__ import annotations

import json
from pathlib import Path

# (title, metric keys drawn together); a panel is drawn when at least one key was logged
PANELS = (
    ("losses of both players", ("loss_d", "loss_g")),
    ("scores", ("d_real", "d_fake", "e_real", "e_fake")),
    ("penalties", ("gp",)),
)


def save_player_curves(metrics_jsonl: str | Path, path: str | Path, panels=PANELS) -> Path | None:
    """One panel per group of ``panels`` that the run logged; None when there is nothing to draw."""
    metrics_jsonl = Path(metrics_jsonl)
    if not metrics_jsonl.is_file():
        return None
    rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("event", "train") == "train"]
    drawn = [(title, [k for k in keys if any(k in r for r in rows)]) for title, keys in panels]
    drawn = [(title, keys) for title, keys in drawn if keys]
    if not drawn:
        return None
    from genzoo.viz.samples import _matplotlib

    plt = _matplotlib()
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.5 * len(drawn), 3.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], drawn):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_progress_strip(samples_dir: str | Path, path: str | Path, max_panels: int = 6) -> Path | None:
    """Up to ``max_panels`` of the grids in ``samples_dir`` (first, last and evenly between), in a row."""
    grids = sorted(Path(samples_dir).glob("step_*.png"))
    if len(grids) < 2:
        return None
    if len(grids) > max_panels:
        picks = [round(i * (len(grids) - 1) / (max_panels - 1)) for i in range(max_panels)]
        grids = [grids[i] for i in sorted(set(picks))]
    from PIL import Image

    from genzoo.viz.samples import _matplotlib

    plt = _matplotlib()
    fig, axes = plt.subplots(1, len(grids), figsize=(3 * len(grids), 3.3), squeeze=False)
    for ax, grid in zip(axes[0], grids):
        ax.imshow(Image.open(grid), cmap="gray")
        ax.set_title(f"step {int(grid.stem.split('_')[1])}")
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

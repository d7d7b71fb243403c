"""The store's usage over time as a chart (`genzoo store stats -o usage.png`); the numbers come
from ``genzoo.store.stats.usage`` (the store itself draws nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genzoo.core.atomic import write_atomic_with
from genzoo.core.errors import GenzooError


def usage_chart(rows: list, path: str | Path, by: str) -> Path:
    """Three panels sharing the time axis: generations per period and mean rating (a line per
    model), and the labels given (stacked bars, all models). ``rows``: ``genzoo.store.stats.usage``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GenzooError(f"the chart is a PNG: give -o a path ending in .png, got {path}")
    models = sorted({r.model for r in rows})
    periods = sorted({r.period for r in rows})
    x = {p: i for i, p in enumerate(periods)}
    fig, (top, bottom, labels_ax) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for m in models:
        mine = [r for r in rows if r.model == m]
        top.plot([x[r.period] for r in mine], [r.generations for r in mine], marker="o", label=m)
        rated = [r for r in mine if r.mean_rating is not None]
        if rated:
            bottom.plot([x[r.period] for r in rated], [r.mean_rating for r in rated], marker="s", label=m)
    label_names = sorted({name for r in rows for name in r.labels})
    below = np.zeros(len(periods))
    for name in label_names:  # labels of every model, stacked per period
        counts = np.zeros(len(periods))
        for r in rows:
            counts[x[r.period]] += r.labels.get(name, 0)
        labels_ax.bar(range(len(periods)), counts, bottom=below, label=name)
        below += counts
    top.set_ylabel(f"generations per {by}")
    bottom.set_ylabel("mean rating")
    labels_ax.set_ylabel("labels given")
    if label_names:
        labels_ax.legend(fontsize=8)
    labels_ax.set_xticks(range(len(periods)), periods, rotation=45, ha="right")
    if models:
        top.legend(fontsize=8)
    if not rows:
        top.text(0.5, 0.5, "no records", ha="center", va="center", transform=top.transAxes)
    fig.suptitle(f"genzoo store: usage and feedback per {by}")
    fig.tight_layout()
    write_atomic_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path

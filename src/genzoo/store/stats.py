"""Usage and feedback over time, per model: what ``genzoo stats`` prints and draws.

Generations are counted in the period they were made; feedback (ratings, labels) in the period it
was given, attributed to the model of the generation it is about. Periods are UTC days, or ISO
weeks starting on Monday. A record without a registered model is grouped by its family. The
caller sees only what its role and ownership allow (an admin: everything).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store.visibility import seen_by

PERIODS = ("day", "week")
DAY = 86_400.0


@dataclass
class UsageRow:
    period: str  # the period's first day, YYYY-MM-DD
    model: str
    generations: int = 0
    ratings: int = 0
    rating_sum: float = 0.0
    labels: Counter = field(default_factory=Counter)

    @property
    def mean_rating(self) -> float | None:
        return self.rating_sum / self.ratings if self.ratings else None


def period_start(t: float, by: str) -> float:
    if by == "day":
        return math.floor(t / DAY) * DAY
    # Monday 1969-12-29 is 3 days before the epoch; weeks are counted from it
    return math.floor((t + 3 * DAY) / (7 * DAY)) * 7 * DAY - 3 * DAY


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d")


def usage(store, by: str = "day", model: str | None = None) -> list[UsageRow]:
    """One row per (period, model) with generations, ratings and labels; oldest first."""
    if by not in PERIODS:
        raise GenzooError(f"--by must be one of {', '.join(PERIODS)}, got {by!r}")
    viewer = store.viewer
    who, who_params = seen_by(viewer, "g")
    name = "COALESCE(m.name, g.family, '(none)')"
    model_sql, model_params = ("", []) if model is None else (f" AND {name} = ?", [model])
    b = store.backend
    gens = b.rows(f"SELECT g.created_at AS t, {name} AS model FROM generations g LEFT JOIN models m ON m.id = g.model_id "
                  f"WHERE {who}{model_sql}", [*who_params, *model_params])
    fb = b.rows(f"SELECT f.created_at AS t, f.rating, f.label, {name} AS model FROM feedback f JOIN generations g ON g.id = f.generation_id "
                f"LEFT JOIN models m ON m.id = g.model_id WHERE {who}{model_sql}", [*who_params, *model_params])
    rows: dict[tuple[float, str], UsageRow] = {}

    def row(t, m) -> UsageRow:
        start = period_start(t, by)
        return rows.setdefault((start, m), UsageRow(_day(start), m))

    for r in gens:
        row(r["t"], r["model"]).generations += 1
    for r in fb:
        u = row(r["t"], r["model"])
        if r["rating"] is not None:
            u.ratings += 1
            u.rating_sum += float(r["rating"])
        if r["label"]:
            u.labels[r["label"]] += 1
    return [rows[key] for key in sorted(rows)]


def table(rows: list[UsageRow], by: str):
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"usage and feedback per {by} and model")
    for col in ("period", "model", "generations", "ratings", "mean rating", "labels"):
        t.add_column(col, overflow="fold")
    for r in rows:
        labels = ", ".join(f"{k} {v}" for k, v in r.labels.most_common())
        cells = (r.period, r.model, str(r.generations), str(r.ratings), "-" if r.mean_rating is None else f"{r.mean_rating:.2f}", labels or "-")
        t.add_row(*(Text(c) for c in cells))
    return t


def chart(rows: list[UsageRow], path: Path, by: str) -> Path:
    """Three panels sharing the time axis: generations per period and mean rating (a line per
    model), and the labels given (stacked bars, all models)."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path

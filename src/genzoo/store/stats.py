"""Usage and feedback over time, per model: what ``genzoo store stats`` prints (the chart: ``genzoo.viz.usage``).

Generations are counted in the period they were made; feedback (ratings, labels) in the period it
was given, attributed to the model of the generation it is about. Periods are UTC days, or ISO
weeks starting on Monday. A record without a registered model is grouped by its family. The
caller sees only what its role and ownership allow (an admin: everything).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from genzoo.core.errors import GenzooError
from genzoo.store import search as S
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
    if model is not None:
        if not isinstance(model, str) or "\x00" in model:
            raise GenzooError(f"--model must be a model name, got {model!r}")
        S.check_text(model, "--model")
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
            u.labels[store._open(r["label"], "label")] += 1  # a sealed label is counted by its plaintext (needs the key)
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

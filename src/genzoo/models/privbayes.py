"""PrivBayes: a Bayesian network over a table's columns, fitted from (noisy) counts.

Why this family: DP-SGD on a table VAE stays at the majority class at epsilon = 3 on diamonds (the
noise per step swamps a 100k-parameter gradient; benchmarks/privacy/results.md), while the methods
that do well on private tables measure a few low-order marginals with noise and fit a model to them
(PrivBayes, Zhang et al. 2017; MST and AIM, McKenna et al. 2021/2022). This is PrivBayes in rho-zCDP,
on genzoo's table encoding. Without --dp-epsilon the same network is fitted from exact counts.

Cells. A categorical column's cells are its categories. A numeric column's are its encoding's mixture
modes, each cut into ``slices`` equal-probability slices of the mode's Gaussian (offsets v = (x - mu)
/ 4 sd, so a slice's edges are Phi^-1(k / slices) / 4), plus one cell for missing. The cells come
from the data spec, so they cost no privacy: a DP run's spec is itself private
(genzoo.train.dp_table_encoding).

Fit (``fit_table``), with d columns:
1. The 1-way counts of every column (noisy under DP).
2. A network of degree ``degree``, built greedily from a first column drawn at random: each next column
   v takes the parent set P (of up to ``degree`` placed columns, its table at most ``max_cells``) that
   maximizes dep(v, P) = 1/2 || C(v, P) - p_v (x) C(P) ||_1, the rows that would move if v were
   independent of P given v's (noisy) share p_v. One row changes dep by at most 1 (one cell of C(v, P),
   p_v's worth of C(P)), so under DP the choice is the exponential mechanism (Gumbel-max).
3. Each column's table with its parents, C(v, P_v) (noisy under DP, negatives clipped), normalised per
   parent cell into P(v | P_v); a parent cell no row reached falls back to p_v.

Sampling: ancestral, in the network's order; a numeric cell becomes its mode's one-hot and an offset
drawn from the mode's Gaussian truncated to the slice. Conditions on a column are met by rejection.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from genzoo.core.errors import GenzooError
from genzoo.family import register
from genzoo.models.base import SAMPLE, ModelConfig
from genzoo.models.tabular import TableModel, device_of

NORMAL = torch.distributions.Normal(0.0, 1.0)


@dataclass
class PrivBayesConfig(ModelConfig):
    degree: int = 2  # parents per column at most (PrivBayes' k)
    slices: int = 4  # equal-probability slices per numeric mode
    max_cells: int = 40_000  # the largest table a column may have with its parents, whatever the rows
    # PrivBayes' theta-usefulness (its paper's 4): a table may have at most rows / (usefulness x its cells' noise
    # sd, at least 1) cells, so that a cell holds `usefulness` noise sds of rows on average. Measured on diamonds
    # at epsilon 3 (43,152 rows, cell sd 6.8: a cap of 1,590 cells), validation split, seeds 0 / 1: quality 0.949 /
    # 0.956, ML efficacy (cut) 0.510 / 0.604; with usefulness 2: 0.951 / 0.959, 0.514 / 0.605; with only
    # max_cells 40,000 (3-way tables of one row per cell): seed 0, quality 0.836, ML efficacy 0.502.
    usefulness: float = 4.0
    # the fitted network (empty: not fitted yet, every column independent and uniform)
    order: list[int] = field(default_factory=list)
    parents: list[list[int]] = field(default_factory=list)


@register("privbayes", description="PrivBayes: a Bayesian network of the columns from (noisy) counts; private by design",
          data_kinds=("table",))
class PrivBayes(TableModel):
    config_class = PrivBayesConfig
    capabilities = frozenset({SAMPLE})
    fits_once = True  # fitted in one pass over the training rows (no gradient steps): genzoo.train.Trainer

    def __init__(self, config: PrivBayesConfig):
        super().__init__(config)
        self._bind_table()
        if config.degree < 1 or config.slices < 1 or config.max_cells < 1 or not config.usefulness > 0:
            raise GenzooError("privbayes: degree, slices and max_cells must be 1 or more, usefulness above 0")
        self.columns = self._cells_of_columns()
        d = len(self.columns)
        if not config.order:
            config.order, config.parents = list(range(d)), [[] for _ in range(d)]
        if sorted(config.order) != list(range(d)) or len(config.parents) != d:
            raise GenzooError(f"privbayes: a network over {d} columns needs an order and parents for each")
        self.register_buffer("_anchor", torch.zeros(0))  # the device of a model without parameters
        for v in range(d):
            configs = math.prod(self.columns[p]["cells"] for p in config.parents[v])
            cells = self.columns[v]["cells"]
            self.register_buffer(f"cpt_{v}", torch.full((cells, configs), 1.0 / cells))

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        # one pass over the rows: a step is the whole fit (the Trainer's fits_once path)
        return {"steps": 1, "batch_size": 1, "ema_decay": None, "val_every": 0, "warmup_steps": 0, "schedule": "constant"}

    @classmethod
    def tiny_overrides(cls, data_spec: dict) -> dict:
        return {"slices": 2}

    # ---- cells of the encoded row -----------------------------------------------------------------
    def _cells_of_columns(self) -> list[dict]:
        cols = []
        for i, col in enumerate(self.table["columns"]):
            own = {kind: (s, w) for kind, s, w, c in self.blocks if c == i}
            if "category" in own:
                cols.append({"kind": "category", "cells": own["category"][1], "block": own["category"]})
            else:
                modes = own["mode"][1]
                cols.append({"kind": "numeric", "cells": modes * self.config.slices + ("missing" in own), "modes": modes,
                             "value": own["value"][0], "mode": own["mode"], "missing": own.get("missing")})
        return cols

    def _slice_edges(self) -> torch.Tensor:
        """Offsets v at the slices' edges: Phi^-1(k / slices) / 4 (v = (x - mu) / 4 sd), -1 and 1 at the ends."""
        k = torch.arange(1, self.config.slices, dtype=torch.float64) / self.config.slices
        inner = NORMAL.icdf(k.float()).double() / 4
        return torch.cat([torch.tensor([-1.0], dtype=torch.float64), inner, torch.tensor([1.0], dtype=torch.float64)])

    def to_cells(self, x: torch.Tensor) -> np.ndarray:
        """Encoded rows (N, width) -> (N, d) cell indices."""
        x = x.detach().cpu().double()
        edges = self._slice_edges()
        out = []
        for col in self.columns:
            if col["kind"] == "category":
                s, w = col["block"]
                out.append(x[:, s : s + w].argmax(1))
                continue
            s, w = col["mode"]
            mode = x[:, s : s + w].argmax(1)
            piece = (torch.bucketize(x[:, col["value"]].clamp(-1, 1), edges[1:-1], right=True)).clamp(0, self.config.slices - 1)
            cell = mode * self.config.slices + piece
            if col["missing"]:
                ms, _ = col["missing"]
                cell = torch.where(x[:, ms + 1] > x[:, ms], torch.full_like(cell, w * self.config.slices), cell)
            out.append(cell)
        return torch.stack(out, 1).numpy().astype(np.int64)

    def from_cells(self, cells: torch.Tensor, generator) -> torch.Tensor:
        """(N, d) cell indices -> encoded rows; a numeric offset is drawn inside its slice of the mode's Gaussian."""
        n = len(cells)
        dev = device_of(generator, self)
        out = torch.zeros(n, self.width, dtype=torch.float32)
        cdf_edges = NORMAL.cdf(self._slice_edges().float() * 4)  # 0 .. 1 at the slices' edges
        for j, col in enumerate(self.columns):
            c = cells[:, j]
            if col["kind"] == "category":
                s, w = col["block"]
                out[torch.arange(n), s + c] = 1.0
                continue
            s, w = col["mode"]
            missing = c >= w * self.config.slices
            mode, piece = (c % (w * self.config.slices)) // self.config.slices, c % self.config.slices
            u = torch.rand(n, generator=generator, device=dev).cpu()
            lo, hi = cdf_edges[piece], cdf_edges[piece + 1]
            p = (lo + u * (hi - lo)).clamp(1e-6, 1 - 1e-6)
            out[:, col["value"]] = (NORMAL.icdf(p) / 4).clamp(-1, 1)
            out[torch.arange(n), s + torch.where(missing, torch.zeros_like(mode), mode)] = 1.0
            if col["missing"]:
                ms, _ = col["missing"]
                out[torch.arange(n), ms + missing.long()] = 1.0
        return out.to(self.device)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    # ---- fitting ----------------------------------------------------------------------------------
    def configure_optimizers(self, lr, weight_decay, betas=(0.9, 0.999)) -> dict:
        return {}  # nothing to step: fit_table counts

    def loss(self, batch):
        raise GenzooError("privbayes is fitted from counts in one pass (fit_table), not by a loss")

    def fit_table(self, x: torch.Tensor, privacy=None, seed: int = 0) -> dict:
        """Fits the network to the encoded training rows ``x``; ``privacy`` (genzoo.train.dp_marginals)
        adds its noise and picks by its exponential mechanism; None: exact counts and the best choice."""
        cells = self.to_cells(x)
        sizes = [c["cells"] for c in self.columns]
        d = len(sizes)

        @functools.cache  # a candidate (column, parents) comes up again in every later round, and once more at the end
        def counts(cols: tuple[int, ...]) -> np.ndarray:
            flat = np.ravel_multi_index(tuple(cells[:, j] for j in cols), tuple(sizes[j] for j in cols))
            return np.bincount(flat, minlength=math.prod(sizes[j] for j in cols)).astype(np.float64).reshape([sizes[j] for j in cols])

        noise = privacy.noise if privacy is not None else None
        one_way = [counts((j,)) for j in range(d)]
        if privacy is not None:
            one_way = [np.clip(c + privacy.one_way_sd * noise.normal(c.size).reshape(c.shape), 0, None) for c in one_way]
        share = [c / c.sum() if c.sum() > 0 else np.full(c.shape, 1 / c.size) for c in one_way]

        rows = float(one_way[0].sum())  # under DP the noisy count: n itself is not published
        cap = min(self.config.max_cells, rows / (self.config.usefulness * max(1.0, privacy.table_sd if privacy is not None else 1.0)))
        rng = np.random.default_rng([seed, 0x9B])  # the first column: public randomness (it depends on no row)
        order = [int(rng.integers(d))]
        parents: list[list[int]] = [[] for _ in range(d)]

        @functools.cache
        def dependence(v: int, ps: tuple[int, ...]) -> float:
            joint = counts((v, *ps)).reshape(sizes[v], -1)
            return 0.5 * np.abs(joint - share[v][:, None] * joint.sum(0, keepdims=True)).sum()

        while len(order) < d:
            candidates = [(v, ps) for v in range(d) if v not in order
                          for k in range(1, min(self.config.degree, len(order)) + 1)
                          for ps in itertools.combinations(order, k) if sizes[v] * math.prod(sizes[p] for p in ps) <= cap]
            scores = [dependence(v, ps) for v, ps in candidates]
            if not candidates:  # every table too large: the next column goes in without parents
                v = next(v for v in range(d) if v not in order)
                candidates, scores = [(v, ())], [0.0]
            scores = np.asarray(scores)
            if privacy is not None:
                pick = int(np.argmax(privacy.selection_epsilon * scores / 2 + noise.gumbel(len(scores))))
            else:
                pick = int(np.argmax(scores))
            v, ps = candidates[pick]
            order.append(v)
            parents[v] = sorted(ps)

        self.config.order, self.config.parents = order, parents
        for v in range(d):
            table = counts((v, *parents[v])).reshape(sizes[v], -1) if parents[v] else one_way[v][:, None]
            if privacy is not None and parents[v]:
                table = np.clip(table + privacy.table_sd * noise.normal(table.size).reshape(table.shape), 0, None)
            totals = table.sum(0, keepdims=True)
            cpt = np.where(totals > 0, table / np.where(totals > 0, totals, 1), share[v][:, None])
            self.register_buffer(f"cpt_{v}", torch.as_tensor(cpt, dtype=torch.float32, device=self.device))
        return {"network_choices": float(d - 1), "table_cells_cap": float(cap),
                "largest_table": float(max(getattr(self, f"cpt_{v}").numel() for v in range(d)))}

    # ---- sampling ---------------------------------------------------------------------------------
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None) -> torch.Tensor:
        if not isinstance(n, int) or n < 0:
            raise GenzooError(f"n must be a whole number of rows, 0 or more; got {n!r}")
        sizes = [c["cells"] for c in self.columns]

        def draw(m, g):
            dev = device_of(g, self)  # draws happen where the generator lives (a CUDA generator draws on the GPU)
            cells = torch.zeros(m, len(sizes), dtype=torch.long, device=dev)
            for v in self.config.order:
                ps = self.config.parents[v]
                row = torch.zeros(m, dtype=torch.long, device=dev)
                for p in ps:  # the parents' cells, flattened in C order (as fit_table's reshape)
                    row = row * sizes[p] + cells[:, p]
                probs = getattr(self, f"cpt_{v}").to(dev, torch.float64).T[row]
                cells[:, v] = torch.multinomial(probs, 1, generator=g).squeeze(1) if m else row
            return self.from_cells(cells.cpu(), g)

        return self.conditioned(draw, n, condition, generator)

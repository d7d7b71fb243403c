"""A Gaussian copula for tables: the baseline every table model should beat.

Each column is mapped to a normal score: a numeric column through its empirical CDF (the training
split's percentiles, kept in the data spec), a categorical one through the interval its category
covers in the cumulative frequencies (a uniform draw inside it, as SDV does), then z = Phi^-1(u).
The copula is N(0, C): C, a correlation matrix, is fitted by maximum likelihood of the normal scores
(gradient steps on a Cholesky factor, so the Trainer, checkpoints and 2 processes work as for every
family). The factor lives in a layer of its own (``CorrelationFactor``) whose forward gives each row's
loss, so DP-SGD clips and noises its per-row gradients like any layer's (Opacus' functorch path); with
the private encoding of a DP run (genzoo.train.dp_table_encoding) the whole copula is then private. Missing
numeric cells are drawn independently at the column's missing rate.

Sampling: z ~ N(0, C), u = Phi(z), each column through its inverse CDF, then encoded as the table's
rows. Conditions on a categorical column are met by rejection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genzoo.data import table as tables
from genzoo.family import register
from genzoo.models.base import SAMPLE, Batch, ModelConfig
from genzoo.models.tabular import TableModel, device_of

NORMAL = torch.distributions.Normal(0.0, 1.0)
U_EPS = 1e-4  # normal scores of u in [eps, 1 - eps]: the extreme percentiles map to +-3.7, not +-inf


@dataclass
class CopulaConfig(ModelConfig):
    jitter: float = 1e-3  # added to the correlation's diagonal: a column that is a function of another stays invertible


class CorrelationFactor(nn.Module):
    """C = D^-1/2 (L L^T + jitter I) D^-1/2 from a lower-triangular L (its c(c+1)/2 free entries); forward gives
    each row's negative log-density per column under N(0, C). No buffers: Opacus' per-row gradients refuse them."""

    def __init__(self, c: int, jitter: float):
        super().__init__()
        rows, cols = torch.tril_indices(c, c)
        self.c, self.jitter = c, jitter
        self.factor = nn.Parameter(torch.where(rows == cols, 1.0, 0.0))  # the Cholesky factor's lower triangle: identity

    def correlation(self) -> torch.Tensor:
        c = self.c
        rows, cols = torch.tril_indices(c, c, device=self.factor.device)
        low = torch.zeros(c, c, device=self.factor.device, dtype=self.factor.dtype).index_put((rows, cols), self.factor)
        cov = low @ low.T + self.jitter * torch.eye(c, device=low.device, dtype=low.dtype)
        d = cov.diagonal().sqrt()
        return cov / d[:, None] / d[None, :]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, c) normal scores -> (N,) -log N(z; 0, C) / c, written out (no torch.distributions: it runs under vmap)."""
        chol = torch.linalg.cholesky(self.correlation())
        w = torch.linalg.solve_triangular(chol, z.T, upper=False)  # L^-1 z: the Mahalanobis term is ||w||^2
        logdet = 2.0 * chol.diagonal().log().sum()
        return 0.5 * ((w * w).sum(0) + logdet + self.c * math.log(2 * math.pi)) / self.c


@register("copula", description="Gaussian copula baseline: empirical marginals, normal scores, a fitted correlation",
          data_kinds=("table",))
class GaussianCopula(TableModel):
    config_class = CopulaConfig
    capabilities = frozenset({SAMPLE})

    def __init__(self, config: CopulaConfig):
        super().__init__(config)
        spec = self._bind_table()
        c = len(spec["columns"])
        self.corr = CorrelationFactor(c, config.jitter)
        self.n_columns = c
        self._register_load_state_dict_pre_hook(_renamed_factor)

    @classmethod
    def default_train(cls, data_spec: dict) -> dict:
        return {"lr": 0.05, "batch_size": min(1000, max(16, data_spec["table"]["rows"] // 2)), "schedule": "constant",
                "warmup_steps": 0, "ema_decay": None, "val_every": 0, "steps": 300, "weight_decay": 0.0}

    def correlation(self) -> torch.Tensor:
        return self.corr.correlation()

    # ---- rows <-> normal scores ---------------------------------------------------------------------
    def normal_scores(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(N, columns) normal scores of encoded rows; ``noise`` in [0, 1) places a category inside its interval."""
        frame = tables.decode(x, self.table)
        scores = []
        for j, col in enumerate(self.table["columns"]):
            v = frame[col["name"]]
            if col["type"] in ("continuous", "integer"):
                q = np.asarray(col["quantiles"])
                vals = v.to_numpy(dtype=np.float64)
                vals = np.where(np.isnan(vals), col["median"], vals)
                u = np.interp(vals, q, np.linspace(0, 1, len(q)))
                u = torch.as_tensor(u, dtype=torch.float32)
            else:
                lo, hi = self._intervals(col)
                keys = [tables._category_key(k) for k in col["categories"]]
                index = {k: i for i, k in enumerate(keys)}
                k = torch.as_tensor(v.map(tables._category_key).map(index).to_numpy(dtype=np.int64))
                u = lo[k] + (hi[k] - lo[k]) * noise[:, j].cpu()
            scores.append(NORMAL.icdf(u.clamp(U_EPS, 1 - U_EPS)))
        return torch.stack(scores, 1).to(self.device)

    @staticmethod
    def _intervals(col: dict) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.tensor(col["counts"], dtype=torch.float64)
        hi = (p / p.sum()).cumsum(0)
        lo = torch.cat([torch.zeros(1, dtype=torch.float64), hi[:-1]])
        return lo.float(), hi.float()

    def loss(self, batch: Batch) -> torch.Tensor:
        z = self.normal_scores(batch.x, batch.rng.rand(len(batch.x), self.n_columns))
        return self.corr(z).mean()

    @torch.no_grad()
    def sample(self, n: int, *, condition=None, generator: torch.Generator | None = None) -> torch.Tensor:
        import pandas as pd

        def draw(m, g):
            dev = device_of(g, self)
            eps = torch.randn(m, self.n_columns, generator=g, device=dev).cpu().double()
            miss = torch.rand(m, self.n_columns, generator=g, device=dev).cpu().numpy()
            z = eps @ torch.linalg.cholesky(self.correlation().cpu().double()).T
            u = NORMAL.cdf(z.float()).numpy().astype(np.float64)
            columns = {}
            for j, col in enumerate(self.table["columns"]):
                if col["type"] in ("continuous", "integer"):
                    q = np.asarray(col["quantiles"])
                    v = np.interp(u[:, j], np.linspace(0, 1, len(q)), q)
                    columns[col["name"]] = np.where(miss[:, j] < col["missing"], np.nan, v)
                else:
                    hi = np.cumsum(np.asarray(col["counts"], dtype=np.float64)) / sum(col["counts"])
                    k = np.minimum(np.searchsorted(hi, u[:, j], side="right"), len(hi) - 1)
                    columns[col["name"]] = pd.Series([col["categories"][i] for i in k], dtype=object)
            return torch.from_numpy(tables.encode(pd.DataFrame(columns), self.table)).to(self.device)

        return self.conditioned(draw, n, condition, generator)


def _renamed_factor(state_dict, prefix, *_):
    """Checkpoints from before the factor moved into its layer kept it as ``factor``."""
    if prefix + "factor" in state_dict:
        state_dict[prefix + "corr.factor"] = state_dict.pop(prefix + "factor")

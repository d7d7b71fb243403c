"""Memorization (data copying): do samples sit closer to the training set than new real data does?

Everything is measured in data space: each example flattened to a float64
row (images as their stored integer levels, points as their values), with
Euclidean distance. Three figures, each read against held-out real examples
(never seen in training) standing where the samples stand:

- exact copies: share of samples equal, value for value, to some training
  example (rows hashed by their bytes). 0 = no copying.
- NN distance share: d(x) = distance from x to its nearest training example.
  Let t be the p-th percentile (p = 5) of d over the held-out examples; the
  share of samples with d(x) < t is about p% for a model that generalizes
  as well as fresh data does, and near 1 for one that replays its training
  set (measured on the demo diffusion model: 21.5%).
- C_T (Meehan, Chaudhuri & Dasgupta, AISTATS 2020). Partition space into
  cells by k-means on the training set, each point going to its nearest
  centre. In cell c, with m held-out points and n samples, compare their
  d-values with the Mann-Whitney statistic

      U_c = #{(i, j): d(sample_j) > d(heldout_i)} + 1/2 #{ties},
      Z_c = (U_c - mn/2) / sqrt(mn(m + n + 1)/12)

  (the paper's z-score, without a tie correction: ties only shrink the true
  variance a little, so |Z| is if anything understated). Cells holding fewer
  than ``min_per_cell`` samples are dropped (the paper's threshold tau on a
  cell's share of the samples, here tau = min_per_cell / n_samples), and

      C_T = sum_c w_c Z_c / sum_c w_c,   w_c = held-out share of cell c,

  over the kept cells. Samples closer to the training set than held-out data
  in their cell give Z_c < 0: C_T << 0 means copying, C_T >> 0 underfitting
  (samples farther from the data than real data is), C_T near 0 neither.
  d is the distance to the nearest example of the whole training set, the
  same d as the share above (a point's nearest training example nearly
  always lies in its own cell anyway).

Defaults, measured on digits (1000 train, 447 test as held-out; samples:
1000 replayed training images, the 350 val images, 1000 uniform random
levels):

- ``DEFAULT_CELLS = 5``. C_T with 1, 3, 5, 10, 20, 40 cells: replayed
  -30.4, -17.8, -13.9, -10.1, -7.3, -5.7; uniform +30.4, +17.8, +13.8,
  +9.9, +7.0, +5.7; val +0.45, +0.28, +0.34, +0.39, +0.05, +0.33. Every
  choice separates the three; more cells localize copying (a model can copy
  in one region and underfit in another, which one global test averages
  away) but thin the data: at 5 cells every cell holds 61-112 test and
  26-99 val images, at 10 cells 3 of the 10 get under 20 val images and
  the floor loses them, at 40 it keeps 3 cells. Five k-means seeds move the
  val C_T within +0.16..+0.34; on toy2d (i.i.d. splits, 1000 val or test
  points as samples, 2000 test points held out) it spreads over -1.0..+1.5.
- ``DEFAULT_MIN_PER_CELL = 20`` samples, i.e. tau = 20/n in the paper's terms: the
  normal approximation behind Z_c wants ~20 a side, and a collapsed
  generator then keeps only the cells it really populates.
- ``PERCENTILE = 5``: the test split's 5th percentile of d is 13.35 levels;
  the val images, used as samples, have 9.1% below it (they sit a little
  nearer the training images than the test images do, likely because the
  splits are contiguous runs of the file), which is why a floor is printed
  beside it.
  Replayed training images give 100%, uniform random levels 0%.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import torch

from genzoo.core.errors import GenzooError

DEFAULT_CELLS = 5
DEFAULT_MIN_PER_CELL = 20
PERCENTILE = 5.0
KMEANS_SEED = 0
_CHUNK_ELEMENTS = 1 << 22  # distance-matrix entries held at once (32 MiB in float64)


def as_rows(x, what: str = "samples") -> torch.Tensor:
    """``x`` as an (N, D) float64 CPU tensor, one flattened example per row; non-finite values refused."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim < 1 or len(x) == 0:
        raise GenzooError(f"{what}: need at least one example, got shape {tuple(x.shape)}")
    x = x.reshape(len(x), -1)
    if not torch.isfinite(x).all():
        raise GenzooError(f"{what} contain NaN or infinite values")
    return x + 0.0  # -0.0 becomes 0.0, so equal values have equal bytes


# ---- exact copies ----------------------------------------------------------


def row_hashes(rows: torch.Tensor) -> set[bytes]:
    """A 16-byte digest of each row's float64 bytes."""
    data = as_rows(rows, "rows").numpy()
    return {hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in data}


def exact_copy_share(samples, train, *, train_hashes: set[bytes] | None = None) -> float:
    """Share of ``samples`` equal in every value to some example of ``train``."""
    samples = as_rows(samples)
    known = train_hashes if train_hashes is not None else row_hashes(train)
    data = samples.numpy()
    hits = sum(hashlib.blake2b(r.tobytes(), digest_size=16).digest() in known for r in data)
    return hits / len(data)


# ---- nearest-training-neighbour distances ------------------------------------


def nn_distances(x, train) -> torch.Tensor:
    """(N,) Euclidean distance from each row of ``x`` to its nearest row of ``train`` (chunked)."""
    x, train = as_rows(x), as_rows(train, "training examples")
    if x.shape[1] != train.shape[1]:
        raise GenzooError(f"examples have {x.shape[1]} values but training examples {train.shape[1]}")
    t2 = train.square().sum(1)
    rows = max(1, _CHUNK_ELEMENTS // len(train))
    out = []
    for i in range(0, len(x), rows):
        a = x[i : i + rows]
        # |a|^2 + |t|^2 - 2 a.t is exact for integer levels in float64; clamp rounding below zero
        d2 = a.square().sum(1, keepdim=True) + t2 - 2 * a @ train.T
        out.append(d2.min(1).values.clamp_min(0).sqrt())
    return torch.cat(out)


def closer_than_heldout_share(sample_nn, heldout_nn, percentile: float = PERCENTILE) -> tuple[float, float]:
    """Share of samples whose NN-train distance is below the held-out ``percentile``, and that threshold.

    About ``percentile``/100 when samples are as far from the training set as
    fresh data; up to 1 when they copy it.
    """
    sample_nn = torch.as_tensor(sample_nn, dtype=torch.float64)
    heldout_nn = torch.as_tensor(heldout_nn, dtype=torch.float64)
    if not 0 < percentile < 100:
        raise GenzooError(f"percentile must be in (0, 100), got {percentile}")
    threshold = torch.quantile(heldout_nn, percentile / 100).item()
    return (sample_nn < threshold).double().mean().item(), threshold


# ---- C_T ----------------------------------------------------------------------


def kmeans(x, k: int, *, seed: int = KMEANS_SEED, iterations: int = 100) -> torch.Tensor:
    """(k, D) centres: k-means++ seeding from a ``seed``-ed generator, then Lloyd steps until stable."""
    x = as_rows(x, "k-means input")
    if not 1 <= k <= len(x):
        raise GenzooError(f"k-means needs 1 <= k <= {len(x)} points, got k={k}")
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=g)]
    closest = _sq_dist(x, centres).squeeze(1)
    for _ in range(1, k):
        weights = closest if closest.sum() > 0 else torch.ones_like(closest)
        nxt = x[torch.multinomial(weights, 1, generator=g)]
        centres = torch.cat([centres, nxt])
        closest = torch.minimum(closest, _sq_dist(x, nxt).squeeze(1))
    labels = None
    for _ in range(iterations):
        new = assign_cells(x, centres)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        counts = torch.bincount(labels, minlength=k).double()
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        filled = counts > 0  # an emptied cell keeps its old centre
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


def assign_cells(x, centres) -> torch.Tensor:
    """(N,) index of each row's nearest centre (lowest index on ties)."""
    return _sq_dist(as_rows(x, "points"), centres).argmin(1)


def mann_whitney_z(heldout, samples) -> float:
    """Z_U of the module doc: U counts pairs where the sample's value exceeds the held-out one, ties 1/2."""
    h = torch.as_tensor(heldout, dtype=torch.float64).flatten().sort().values
    s = torch.as_tensor(samples, dtype=torch.float64).flatten()
    m, n = len(h), len(s)
    if m == 0 or n == 0:
        raise GenzooError("Mann-Whitney needs at least one value on each side")
    below = torch.searchsorted(h, s, side="left").double()  # held-out values < each sample
    ties = torch.searchsorted(h, s, side="right").double() - below
    u = (below + 0.5 * ties).sum().item()
    return (u - m * n / 2) / (m * n * (m + n + 1) / 12) ** 0.5


class CT(NamedTuple):
    value: float  # C_T; NaN when no cell is kept
    cells_kept: int
    cells: int


def c_t_from_cells(heldout_nn, heldout_cell, sample_nn, sample_cell, cells: int,
                   min_per_cell: int = DEFAULT_MIN_PER_CELL) -> CT:
    """C_T from precomputed NN-train distances and cell labels (see the module doc)."""
    heldout_nn, sample_nn = torch.as_tensor(heldout_nn), torch.as_tensor(sample_nn)
    heldout_cell, sample_cell = torch.as_tensor(heldout_cell), torch.as_tensor(sample_cell)
    total, weight, kept = 0.0, 0.0, 0
    for c in range(cells):
        h, s = heldout_nn[heldout_cell == c], sample_nn[sample_cell == c]
        if len(s) < min_per_cell or len(h) == 0:
            continue
        w = len(h) / len(heldout_nn)
        total += w * mann_whitney_z(h, s)
        weight += w
        kept += 1
    return CT(total / weight if kept else float("nan"), kept, cells)


def c_t_statistic(train, heldout, samples, *, cells: int = DEFAULT_CELLS,
                  min_per_cell: int = DEFAULT_MIN_PER_CELL, seed: int = KMEANS_SEED) -> CT:
    """The C_T test of Meehan et al. (2020): << 0 copying, >> 0 underfitting, ~0 neither."""
    return MemorizationReference(train, heldout, cells=cells, min_per_cell=min_per_cell, seed=seed).c_t(samples)


# ---- everything at once --------------------------------------------------------


class MemorizationReference:
    """What the checks need from the training and held-out sets, computed once for many sample sets."""

    def __init__(self, train, heldout, *, cells: int = DEFAULT_CELLS, min_per_cell: int = DEFAULT_MIN_PER_CELL,
                 percentile: float = PERCENTILE, seed: int = KMEANS_SEED):
        self.train = as_rows(train, "training examples")
        self.heldout = as_rows(heldout, "held-out examples")
        if self.heldout.shape[1] != self.train.shape[1]:
            raise GenzooError(f"held-out examples have {self.heldout.shape[1]} values, "
                              f"training examples {self.train.shape[1]}")
        self.cells, self.min_per_cell, self.percentile = min(cells, len(self.train)), min_per_cell, percentile
        self.train_hashes = row_hashes(self.train)
        self.centres = kmeans(self.train, self.cells, seed=seed)
        self.heldout_nn = nn_distances(self.heldout, self.train)
        self.heldout_cell = assign_cells(self.heldout, self.centres)
        self.threshold = torch.quantile(self.heldout_nn, percentile / 100).item()

    def c_t(self, samples, sample_nn=None) -> CT:
        samples = as_rows(samples)
        if sample_nn is None:
            sample_nn = nn_distances(samples, self.train)
        return c_t_from_cells(self.heldout_nn, self.heldout_cell, sample_nn, assign_cells(samples, self.centres),
                              self.cells, self.min_per_cell)

    def metrics(self, samples) -> dict:
        samples = as_rows(samples)
        if samples.shape[1] != self.train.shape[1]:
            raise GenzooError(f"samples have {samples.shape[1]} values, training examples {self.train.shape[1]}")
        nn = nn_distances(samples, self.train)
        share, _ = closer_than_heldout_share(nn, self.heldout_nn, self.percentile)
        ct = self.c_t(samples, nn)
        return {
            "copy_exact_share": exact_copy_share(samples, None, train_hashes=self.train_hashes),
            "copy_nn_below_p5_share": share,
            "copy_nn_median": nn.median().item(),
            "copy_ct": ct.value,
            "copy_ct_cells": ct.cells_kept,
        }

    def context(self) -> dict:
        """The settings behind the figures (not per sample set)."""
        return {
            "copy_nn_percentile": self.percentile,
            "copy_nn_threshold": self.threshold,
            "copy_nn_median_heldout": self.heldout_nn.median().item(),
            "copy_ct_cells_total": self.cells,
            "copy_ct_min_per_cell": self.min_per_cell,
            "copy_train_n": len(self.train),
            "copy_heldout_n": len(self.heldout),
        }


def memorization_metrics(samples, train, heldout, **options) -> dict:
    """All the copying figures of ``samples`` (flat, JSON-ready): see ``MemorizationReference.metrics``."""
    reference = MemorizationReference(train, heldout, **options)
    return {**reference.metrics(samples), **reference.context()}


def memorization_floor(train, heldout, real, **options) -> dict:
    """The same figures for ``real`` examples unseen in training (e.g. a validation split), keys + "_floor"."""
    return {k + "_floor": v for k, v in MemorizationReference(train, heldout, **options).metrics(real).items()}


def _sq_dist(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    return (x.square().sum(1, keepdim=True) + centres.square().sum(1) - 2 * x @ centres.T).clamp_min(0)

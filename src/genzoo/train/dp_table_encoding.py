"""A table's encoding fitted with differential privacy: the schema that a DP run may publish.

DP-SGD protects the weights, but a table model carries its encoding too (the data spec in every
checkpoint), and the plain fit (``table.fit_spec``) holds each numeric column's exact minimum and
maximum (some person's value), its percentiles and mixture modes, and every category's count,
including a category that one person has. Under ``--dp-epsilon`` the encoding comes instead from two
Gaussian-mechanism releases, counted in the same RDP accountant as the SGD steps
(``genzoo.train.dp``):

1. **Ranges and categories.** Per numeric column, a histogram over a fixed partition of the reals
   that no data chose (``CELLS_PER_OCTAVE`` cells per octave of |v| for each sign, one cell around 0,
   one for missing); per categorical column, the counts of its training categories. One row adds 1 to
   one cell per column, so the L2 sensitivity is sqrt(columns) and every cell gets
   N(0, (sigma sqrt(columns))^2). A numeric range spans the cells between the noisy 0.1% and 99.9%
   points of the cells whose noisy count clears ``RANGE_SDS`` noise sds (an empty cell does so with
   probability 3e-6), so outliers are cut (clipped to the range), not published. A category is kept only if its noisy count clears tau = 1 + s Phi^-1(1 - delta_t / k)
   (k categorical columns): a category that only one person has is then published with probability
   at most delta_t / k, and the whole release is (eps, delta)-DP with eps from the RDP accountant at
   delta - delta_t (the thresholded histogram over a data-dependent key set, as in Korolova et al.
   2009 and Wilson et al. 2020). A row whose category was not kept is encoded as the column's most
   frequent kept category.
2. **Shapes.** Per numeric column, ``BINS`` equal cells over its released range (values beyond it in
   the end cells) and one for missing: sensitivity sqrt(numeric columns).

The rest (percentiles, median, missing rate and whether a column gets a missing indicator at all, mixture
modes fitted on values drawn from the noisy histogram, decimals) is computed from the noisy counts:
post-processing, free. sigma is set so that the
two releases alone would spend ``SHARE`` of --dp-epsilon; DP-SGD's noise is then calibrated so that both
together spend --dp-epsilon (RDP composes them at far less than the sum).
Public, as a file's header is: the column names, their types as inferred from the file, and the number
of training rows (DP-SGD's sampling rate uses it too).
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from genzoo.core.errors import GenzooError

# The releases alone would spend this share of --dp-epsilon, but composed with DP-SGD in RDP they cost far less:
# on diamonds at epsilon 3 (batch 500) DP-SGD's noise multiplier grows by 1.6% (300 steps) to 4.5% (5,000 steps)
# at 0.3, against 0.3-0.5% at 0.1 with 2.8x the noise on every cell (a cell's sd: 21 rows of 43,152 at 0.3).
SHARE = 0.3
THRESHOLD_DELTA_SHARE = 0.1  # of --dp-delta for the chance that a category one person has is published
CELLS_PER_OCTAVE = 4  # range cells 19% wide: a year column 1990..2020 is released as about 1720..2050 ...
OCTAVES = (-20, 64)  # |v| in 2^-20 .. 2^64; smaller is the zero cell, larger joins the last cell
BINS = 128  # ... and then trimmed to the shape bins that clear RANGE_SDS: about 1988..2021
RANGE_SDS = 4.5
TAIL = 0.001  # of the noisy mass left outside a numeric range at each end
RELEASES = 2
SALT = 0x7AB1E  # the seeded noise of the schema differs from DP-SGD's of the same seed


def _cells_per_sign() -> int:
    return (OCTAVES[1] - OCTAVES[0]) * CELLS_PER_OCTAVE


def log_cell(v: np.ndarray) -> np.ndarray:
    """Cell index of each value in the fixed partition: 0 .. 2K, K the zero cell, K + 1 + k the k-th
    positive cell [2^(k/c + lo), 2^((k+1)/c + lo)), K - 1 - k its mirror on the negative side."""
    k_max = _cells_per_sign()
    a = np.abs(v)
    tiny = a < 2.0 ** OCTAVES[0]
    k = np.floor((np.log2(np.where(tiny, 1.0, a)) - OCTAVES[0]) * CELLS_PER_OCTAVE)
    k = np.clip(k, 0, k_max - 1).astype(np.int64)
    return np.where(tiny, k_max, np.where(v > 0, k_max + 1 + k, k_max - 1 - k))


def cell_edges(i: int) -> tuple[float, float]:
    """[left, right) of cell ``i`` (the zero cell is [0, 0]: a range that starts or ends there starts or ends at 0)."""
    k_max = _cells_per_sign()
    if i == k_max:
        return 0.0, 0.0
    k = i - k_max - 1 if i > k_max else k_max - 1 - i
    lo, hi = 2.0 ** (k / CELLS_PER_OCTAVE + OCTAVES[0]), 2.0 ** ((k + 1) / CELLS_PER_OCTAVE + OCTAVES[0])
    return (lo, hi) if i > k_max else (-hi, -lo)


def noise_multiplier(epsilon: float, delta: float) -> float:
    """sigma (per unit of sensitivity) for which the RELEASES Gaussian releases alone spend ``epsilon`` at ``delta``."""
    from genzoo.train.dp import calibrate, spent_epsilon

    try:
        return calibrate(lambda sigma: spent_epsilon([(sigma, 1.0, RELEASES)], delta), epsilon, lo=1e-3)
    except ValueError:
        raise GenzooError(f"--dp-epsilon {epsilon / SHARE:g} is too small to publish even a table's ranges; raise it") from None


class Noise:
    """N(0, 1) and Gumbel draws from the OS CSPRNG, or seeded (GENZOO_DP_SEEDED_NOISE=1, as DP-SGD's);
    ``salt`` keeps one release's seeded noise apart from another's of the same seed."""

    def __init__(self, seed: int, salt: int = SALT):
        from genzoo.train import dp

        self.seeded = dp.seeded_randomness()
        self.rng = np.random.default_rng([salt, seed]) if self.seeded else None
        self.description = ("a numpy generator seeded by the run's seed: reproducible, NOT secure (the guarantee assumes "
                            "the seed is secret)") if self.seeded else dp.SECURE

    def normal(self, n: int) -> np.ndarray:
        if self.seeded:
            return self.rng.standard_normal(n)
        from genzoo.train.dp import secure_normal

        return secure_normal(n).numpy()

    def gumbel(self, n: int) -> np.ndarray:
        """Standard Gumbels, -log(-log u): argmax(score + Gumbel) is a draw from softmax(score)."""
        from genzoo.train.dp import secure_uniform

        u = self.rng.random(n) if self.seeded else secure_uniform(n).numpy()
        return -np.log(-np.log(np.clip(u, 1e-300, 1 - 1e-16)))


def private_spec(name: str, epsilon: float, delta: float | None, seed: int = 0) -> dict:
    """Table ``name``'s encoding fitted on its training split with (SHARE x ``epsilon``, ``delta``)-DP
    (see the module's docstring); ``spec["privacy"]`` says what it spent, for the accountant."""
    from genzoo.data import table as tables
    from genzoo.train.dp import default_delta, spent_epsilon

    frame, plain, rows = tables.prepared(name)
    train = frame.iloc[rows["train"]].reset_index(drop=True)
    n = len(train)
    delta = float(delta) if delta is not None else default_delta(n)
    delta_t = THRESHOLD_DELTA_SHARE * delta
    sigma = noise_multiplier(SHARE * float(epsilon), delta - delta_t)
    noise = Noise(seed)
    columns = plain["columns"]
    numeric = [c for c in columns if c["type"] in ("continuous", "integer")]
    categorical = [c for c in columns if c not in numeric]
    s1, s2 = sigma * math.sqrt(len(columns)), sigma * math.sqrt(max(len(numeric), 1))
    tau = category_threshold(s1, delta_t, len(categorical))
    out = []
    for col in columns:
        values = train[col["name"]]
        if col in numeric:
            out.append(_numeric(col, values, s1, s2, noise, seed))
        else:
            out.append(_categorical(col, values, s1, tau, noise, epsilon))
    spec = {"name": plain["name"], "target": plain.get("target"), "columns": out, "rows": n}
    spec["segments"] = tables.segments(spec)
    spec["privacy"] = {"mechanism": "gaussian histograms (genzoo.train.dp_table_encoding)", "noise_multiplier": sigma,
                       "releases": RELEASES, "delta": delta, "delta_threshold": delta_t, "category_threshold": round(tau, 1),
                       "cell_noise_sd": [round(s1, 2), round(s2, 2)], "epsilon_alone": spent_epsilon([(sigma, 1.0, RELEASES)], delta - delta_t),
                       "randomness": noise.description}
    return spec


def category_threshold(sd: float, delta_t: float, columns: int) -> float:
    """tau with P(1 + N(0, sd^2) > tau) = delta_t / columns: a category one row has is published that rarely."""
    from scipy.stats import norm

    return 1.0 + sd * float(norm.isf(delta_t / max(columns, 1)))


def _categorical(col: dict, values, s1: float, tau: float, noise: Noise, epsilon: float) -> dict:
    from genzoo.data.table import _category_key

    counts = values.map(_category_key).value_counts(dropna=False)
    noisy = counts.to_numpy(dtype=np.float64) + s1 * noise.normal(len(counts))
    kept = [(k, c) for k, c in zip(counts.index, noisy) if c > tau]
    if not kept:
        raise GenzooError(f"--dp-epsilon {epsilon:g}: no category of column {col['name']!r} is frequent enough to publish privately "
                          f"(each needs about {tau:.0f} rows); raise --dp-epsilon or drop the column")
    kept.sort(key=lambda kc: -kc[1])  # most frequent first: index 0 takes the rows whose category was not kept
    return {**col, "categories": [json.loads(k) for k, _ in kept], "counts": [max(int(round(c)), 1) for _, c in kept],
            "unknown_as": 0}


def _numeric(col: dict, values, s1: float, s2: float, noise: Noise, seed: int) -> dict:
    from genzoo.data.table import QUANTILES, _fit_modes

    v = values.to_numpy(dtype=np.float64)
    present = v[~np.isnan(v)]
    cells = np.bincount(log_cell(present), minlength=2 * _cells_per_sign() + 1).astype(np.float64)
    cells += s1 * noise.normal(len(cells))
    noise.normal(1)  # the missing cell of release 1 (its count is not used: release 2 has one)
    clear = np.where(cells > RANGE_SDS * s1, cells, 0.0)
    if clear.sum() <= 0:
        raise GenzooError(f"--dp-epsilon is too small to publish a range for column {col['name']!r} "
                          f"({len(present)} values; a range cell needs about {RANGE_SDS * s1:.0f}); raise --dp-epsilon or drop the column")
    # the range runs from the cell where the noisy CDF passes TAIL to the one where it passes 1 - TAIL: a handful of
    # outliers (one person's 10M salary) neither shows nor spreads the shape bins over a range the data do not fill
    cdf = np.cumsum(clear) / clear.sum()
    first, last = int(np.searchsorted(cdf, TAIL, side="right")), int(np.searchsorted(cdf, 1 - TAIL, side="left"))
    lo, hi = cell_edges(first)[0], cell_edges(max(last, first))[1]
    if col["type"] == "integer":
        lo, hi = math.floor(lo), math.ceil(hi)
    if hi <= lo:
        hi = lo + 1.0
    # release 2: the shape inside the range
    edges = np.linspace(lo, hi, BINS + 1)
    idx = np.clip(np.searchsorted(edges, present, side="right") - 1, 0, BINS - 1)
    bins = np.bincount(idx, minlength=BINS).astype(np.float64) + s2 * noise.normal(BINS)
    missing = float(np.isnan(v).sum()) + s2 * float(noise.normal(1)[0])
    first, last = _empty_ends(bins, s2)
    if last > first:  # trim the range to where the bins hold more than noise (post-processing)
        bins[:first] = 0.0
        bins[last:] = 0.0
        lo, hi = float(edges[first]), float(edges[last])
    mass = np.clip(bins, 0.0, None)
    if mass.sum() <= 0:
        mass = np.ones(BINS)
    cdf = np.concatenate([[0.0], np.cumsum(mass)]) / mass.sum()
    quantiles = np.interp(np.linspace(0, 1, QUANTILES), cdf, edges)
    quantiles = np.clip(quantiles, lo, hi)
    rng = np.random.default_rng(seed)  # post-processing: values drawn from the noisy histogram, for the mixture fit
    b = rng.choice(BINS, size=3000, p=mass / mass.sum())
    draws = edges[b] + (edges[b + 1] - edges[b]) * rng.random(len(b))
    means, stds, weights = _fit_modes(np.clip(draws, lo, hi), seed)
    decimals = 0 if col["type"] == "integer" else int(min(6, max(0, math.ceil(-math.log10((hi - lo) / 1e4)))))
    miss_rate = max(missing, 0.0) / max(max(missing, 0.0) + mass.sum(), 1.0)
    return {**col, "means": means, "stds": stds, "weights": weights, "min": float(lo), "max": float(hi),
            "median": float(np.interp(0.5, np.linspace(0, 1, QUANTILES), quantiles)), "decimals": decimals,
            "quantiles": quantiles.tolist(),
            # a missing block only where the noisy count says there are missing cells: whether any row lacks a value is data too
            "missing": float(miss_rate) if missing > RANGE_SDS * s2 else 0.0}


def _empty_ends(bins: np.ndarray, sd: float, sds: float = 3.0) -> tuple[int, int]:
    """(first, last): bins[:first] and bins[last:] are the longest runs at either end whose noisy sum stays within
    ``sds`` sds of zero all along (k empty bins sum to N(0, k sd^2)); a sparse but real tail adds up and stays."""
    def run(values):
        total, k = 0.0, 0
        for i, v in enumerate(values, 1):
            total += v
            if total >= sds * sd * math.sqrt(i):
                break
            k = i
        return k

    return run(bins), len(bins) - run(bins[::-1])


def describe(spec: dict) -> str:
    """One line on what the private schema spent, for the run's log."""
    p = spec["privacy"]
    return (f"differential privacy: the table's encoding is fitted from noisy histograms (epsilon {p['epsilon_alone']:.3g} alone, "
            f"cell noise sd {p['cell_noise_sd'][0]:g} rows; categories with fewer than ~{p['category_threshold']:.0f} rows are "
            "merged into their column's most frequent)")


def announce(spec: dict) -> None:
    print(describe(spec), file=sys.stderr)

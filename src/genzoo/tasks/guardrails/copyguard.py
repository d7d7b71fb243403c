"""The copy guard: a sample that sits closer to a training example than real held-out data do.

Per sample, d = Euclidean distance to its nearest training example in data space (flattened levels
or values, ``genzoo.eval.memorization.nn_distances``, the memorization metric's own code); the
sample is caught when d is below the ``percentile``-th percentile of the same distance over held-out
real examples (5 by default: digits' test split gives 13.35 levels; 5% of fresh real data would be
caught, exact and near copies of training digits are caught; counts in benchmarks/guardrails.md).
Exact copies (d = 0) are always caught, whatever the threshold.
"""

from __future__ import annotations

from functools import lru_cache

from genzoo.core.errors import GenzooError
from genzoo.eval.memorization import PERCENTILE, as_rows, nn_distances

HELDOUT_MAX = 2000  # held-out examples used (as eval.report: p5 from 2000 is good to ~0.5%)


class CopyReference:
    """The training set and the held-out threshold, computed once for many sample batches."""

    def __init__(self, train, heldout, percentile: float = PERCENTILE):
        import torch

        if not 0 < percentile < 100:
            raise GenzooError(f"guardrails: [copy] percentile must be in (0, 100), got {percentile}")
        self.train = as_rows(train, "training examples")
        heldout = as_rows(heldout, "held-out examples")[:HELDOUT_MAX]
        self.threshold = torch.quantile(nn_distances(heldout, self.train), percentile / 100).item()
        self.percentile = percentile

    def distances(self, samples) -> list[float]:
        rows = as_rows(samples)
        if rows.shape[1] != self.train.shape[1]:
            raise GenzooError(f"guardrails: samples have {rows.shape[1]} values, the training examples {self.train.shape[1]}")
        return nn_distances(rows, self.train).tolist()

    def caught(self, d: float) -> bool:
        return d == 0 or d < self.threshold


def reference_for(data: str, percentile: float = PERCENTILE) -> CopyReference:
    """The train split of a dataset as the memory, its test split as the held-out data."""
    builtin = data == "digits" or data.startswith("toy2d")  # these never change within a process: cache them
    return (_cached if builtin else _build)(data, percentile)


def _build(data: str, percentile: float) -> CopyReference:
    from genzoo.data import load_dataset

    return CopyReference(load_dataset(data, "train").x, load_dataset(data, "test").x, percentile)


_cached = lru_cache(maxsize=4)(_build)

"""Metrics for 2-D toy data: MMD between samples and test points, test NLL.

MMD^2 uses the unbiased estimator (Gretton et al. 2012) with a sum of RBF
kernels, k(a, b) = mean over s of exp(-|a - b|^2 / (2 s^2)), at fixed
bandwidths s = 0.1, 0.2, 0.5, 1, 2. Fixed rather than a median heuristic,
because a data-dependent bandwidth would score each model under a different
kernel; these span the scales of genzoo's toy sets (about [-4, 4]^2, modes
of width ~0.1-0.5). The unbiased estimate can be slightly negative when the
two sets match; it is reported as is.

The reference is the first ``REFERENCE_POINTS`` (2,000) of the fixed
10,000-point test set: the cost grows with the square of the set sizes (the
full set took ~20 s on 2 shared cores), and with 1,000 samples the estimate's
noise comes mostly from the samples anyway. The test points are i.i.d., so
the first 2,000 are a fixed random subset.
"""

from __future__ import annotations

import torch

from genzoo.core.errors import GenzooError
from genzoo.eval.likelihood import per_example_nll, summarize_nll

BANDWIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0)
REFERENCE_POINTS = 2000
_BLOCK = 1024  # rows per block: a 10,000-point set's full kernel matrix would need 800 MB


def kernel_sum(a: torch.Tensor, b: torch.Tensor, bandwidths=BANDWIDTHS, exclude_diagonal: bool = False) -> float:
    """Sum of k(a_i, b_j) over all pairs, in blocks; ``exclude_diagonal`` drops i == j (a is b)."""
    total = 0.0
    for i in range(0, len(a), _BLOCK):
        d2 = torch.cdist(a[i : i + _BLOCK], b).square()  # (block, M)
        k = sum(torch.exp(d2 / (-2.0 * s * s)) for s in bandwidths) / len(bandwidths)
        if exclude_diagonal:
            rows = torch.arange(i, min(i + _BLOCK, len(a)))
            k[rows - i, rows] = 0.0
        total += k.sum().item()
    return total


def mean_self_kernel(x, bandwidths=BANDWIDTHS) -> float:
    """Mean k(x_i, x_j) over pairs i != j: the term of MMD^2 that a fixed reference set can precompute."""
    x = _points(x)
    return kernel_sum(x, x, bandwidths, exclude_diagonal=True) / (len(x) * (len(x) - 1))


def mmd2(x, y, bandwidths=BANDWIDTHS, y_self_kernel: float | None = None) -> float:
    """Unbiased MMD^2 between point sets x (N, D) and y (M, D) under the RBF-sum kernel.

    ``y_self_kernel``: ``mean_self_kernel(y)`` if already known (saves the
    O(M^2) term when y is a large fixed test set).
    """
    x, y = _points(x), _points(y)
    if x.shape[1] != y.shape[1]:
        raise GenzooError(f"point sets differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    if len(x) < 2 or len(y) < 2:
        raise GenzooError("MMD needs at least 2 points in each set")
    n, m = len(x), len(y)
    kxx = mean_self_kernel(x, bandwidths)
    kyy = mean_self_kernel(y, bandwidths) if y_self_kernel is None else y_self_kernel
    kxy = kernel_sum(x, y, bandwidths) / (n * m)
    return kxx + kyy - 2 * kxy


def reference_points(test_points: torch.Tensor, max_points: int = REFERENCE_POINTS) -> torch.Tensor:
    """The fixed subset of the test set that samples are compared with."""
    return test_points[:max_points]


def test_nll(model, test_points: torch.Tensor, *, batch_size: int = 2048, options: dict | None = None) -> dict:
    """Mean test NLL in nats per point (with its standard error) of a model with ``log_prob``."""
    nll = per_example_nll(model, test_points, batch_size=batch_size, options=options)
    s = summarize_nll(nll, dims=test_points.shape[1])
    return {"nll_nats_per_point": s["nats_per_example"], "nll_std_err_nats": s["std_err"]}


test_nll.__test__ = False  # not a pytest test, despite the name


def _points(x) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().double()
    if x.ndim != 2:
        raise GenzooError(f"points must be (N, D), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise GenzooError("points hold NaN or infinite values")
    return x

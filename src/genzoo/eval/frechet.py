"""Frechet distance between two feature sets (the statistic behind FID).

Each set is summarised by a Gaussian (mean, covariance); the distance is

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2}),

the squared 2-Wasserstein distance between those Gaussians. Computed in
float64 with ``scipy.linalg.sqrtm``. With few samples or dead feature units
the covariances are near-singular and sqrtm can come back inaccurate or with
tiny imaginary parts; both are handled below as FID implementations usually do.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch

from genzoo.core.errors import GenzooError


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F) of (N, F) features, in float64."""
    f = _as_float64(features)
    if len(f) < 2:
        raise GenzooError(f"need at least 2 feature vectors for a covariance, got {len(f)}")
    with one_blas_thread():
        return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b)."""
    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape:
        raise GenzooError(f"feature statistics differ in shape: {mu_a.shape} vs {mu_b.shape}")
    with one_blas_thread():
        covmean = _sqrtm_product(cov_a, cov_b, eps)
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean)
    return float(max(value, 0.0))  # rounding can leave a tiny negative for identical sets


def frechet_distance(features_a, features_b, eps: float = 1e-6) -> float:
    """Frechet distance between two (N, F) feature sets; symmetric, 0 for identical sets."""
    return frechet_distance_from_stats(*feature_statistics(features_a), *feature_statistics(features_b), eps=eps)


def _sqrtm_product(cov_a: np.ndarray, cov_b: np.ndarray, eps: float) -> np.ndarray:
    """Real square root of cov_a @ cov_b, regularised when the product is near-singular."""
    product = cov_a @ cov_b
    covmean = _quiet_sqrtm(product)
    if _relative_error(covmean, product) > 1e-6:
        # Near-singular product: add eps to both diagonals and retry (changes FD by O(eps)).
        offset = np.eye(len(cov_a)) * eps
        product = (cov_a + offset) @ (cov_b + offset)
        covmean = _quiet_sqrtm(product)
        error = _relative_error(covmean, product)
        if error > 1e-3:
            warnings.warn(f"Frechet distance: matrix square root is inaccurate (relative error {error:.2g})",
                          stacklevel=3)
    if np.iscomplexobj(covmean):
        # The true root is real (both factors PSD); imaginary parts are rounding noise unless large.
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3 * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise GenzooError(f"Frechet distance: matrix square root has a large imaginary part ({imag:.3g})")
        covmean = covmean.real
    return covmean


@contextlib.contextmanager
def one_blas_thread():
    """Limit numpy/scipy's BLAS to one thread for the duration.

    Why: these matrices are small (F = 128), and on a shared 2-core machine a
    2-thread OpenBLAS spun so badly that one sqrtm took 1.8 s instead of 0.012 s.
    """
    try:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _quiet_sqrtm(a: np.ndarray) -> np.ndarray:
    from scipy import linalg  # here, not at import: every command imports genzoo.eval through the flows
    # scipy warns on singular input; the accuracy is checked by the caller instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(a)


def _relative_error(root: np.ndarray, target: np.ndarray) -> float:
    """||root^2 - target|| / ||target|| (inf if the root is not finite)."""
    if not np.isfinite(root).all():
        return math.inf
    return float(np.linalg.norm(root @ root - target) / max(np.linalg.norm(target), 1e-300))


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise GenzooError(f"features must be (N, F), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise GenzooError("features hold NaN or infinite values")
    return x

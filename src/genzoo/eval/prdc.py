"""Precision/recall and density/coverage on k-nearest-neighbour balls.

Both pairs judge a fake (generated) feature set against a real one, using
balls around points whose radius is the distance to the point's k-th nearest
neighbour within its own set (the point itself not counted):

- precision (Kynkaenniemi et al. 2019): share of fake points inside at least
  one real ball. Low = samples off the data manifold.
- recall (same paper): share of real points inside at least one fake ball.
  Low = parts of the data the model never produces (mode dropping).
- density (Naeem et al. 2020): how many real balls contain each fake point,
  averaged and divided by k; about 1 when fake matches real, can exceed 1.
  Less fooled by real outliers than precision.
- coverage (same paper): share of real points whose ball contains at least
  one fake point. More robust than recall to fake outliers.

k = 5 throughout genzoo, as both papers recommend.
"""

from __future__ import annotations

import torch

from genzoo.core.errors import GenzooError

DEFAULT_K = 5


def kth_neighbour_radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance from each point to its k-th nearest other point in the same set."""
    if len(points) <= k:
        raise GenzooError(f"need more than k={k} points for k-NN radii, got {len(points)}")
    d = torch.cdist(points, points)
    # column 0 of the sorted distances is the point itself (distance 0)
    return d.kthvalue(k + 1, dim=1).values


def prdc(real, fake, k: int = DEFAULT_K) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (both (N, F) features)."""
    real, fake = _as_float64(real), _as_float64(fake)
    if real.shape[1] != fake.shape[1]:
        raise GenzooError(f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}")
    real_radii = kth_neighbour_radii(real, k)  # (R,)
    fake_radii = kth_neighbour_radii(fake, k)  # (G,)
    d = torch.cdist(real, fake)  # (R, G)
    fake_in_real_ball = d <= real_radii[:, None]  # [i, j]: fake j inside real i's ball
    real_in_fake_ball = d <= fake_radii[None, :]  # [i, j]: real i inside fake j's ball
    return {
        "precision": fake_in_real_ball.any(0).double().mean().item(),
        "recall": real_in_fake_ball.any(1).double().mean().item(),
        "density": fake_in_real_ball.double().sum(0).mean().item() / k,
        "coverage": (d.min(1).values <= real_radii).double().mean().item(),
    }


def _as_float64(x) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().double()
    if x.ndim != 2:
        raise GenzooError(f"features must be (N, F), got shape {tuple(x.shape)}")
    return x

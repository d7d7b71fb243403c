"""Two-dimensional toy distributions, drawn with fixed seeds.

Each set is scaled to roughly [-4, 4]^2. Train, validation and the fixed
10,000-point test set come from different seeds, so test points are never
seen in training.
"""

from __future__ import annotations

import numpy as np
import torch

from genzoo.data.base import Dataset

SIZES = {"train": 20_000, "val": 2_000, "test": 10_000}
SEEDS = {"train": 0, "val": 1, "test": 2}


def _moons(n, rng):
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.1, random_state=int(rng.integers(2**31)))
    return (x - [0.5, 0.25]) * [2.0, 3.0]


def _circles(n, rng):
    from sklearn.datasets import make_circles

    x, _ = make_circles(n, factor=0.5, noise=0.08, random_state=int(rng.integers(2**31)))
    return x * 3.0


def _eight_gaussians(n, rng):
    angles = np.arange(8) * np.pi / 4
    centres = np.stack([np.cos(angles), np.sin(angles)], 1) * 2.0
    x = centres[rng.integers(8, size=n)] + rng.normal(scale=0.5 ** 0.5 * 0.2, size=(n, 2)) * 1.0
    return x * 1.414


def _pinwheel(n, rng, arms=5, radial_std=0.3, tangential_std=0.1, rate=0.25):
    angles = np.linspace(0, 2 * np.pi, arms, endpoint=False)
    feats = rng.normal(size=(n, 2)) * [radial_std, tangential_std] + [1.0, 0.0]
    labels = rng.integers(arms, size=n)
    theta = angles[labels] + rate * np.exp(feats[:, 0])
    rot = np.stack([np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)], 1).reshape(-1, 2, 2)
    return 2 * np.einsum("ti,tij->tj", feats, rot)


def _checkerboard(n, rng):
    x1 = rng.uniform(size=n) * 4 - 2
    x2 = rng.uniform(size=n) - rng.integers(0, 2, size=n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def _spirals(n, rng):
    t = np.sqrt(rng.uniform(size=n)) * 540 * (2 * np.pi) / 360
    arm = rng.integers(2, size=n) * 2 - 1
    x = np.stack([-np.cos(t) * t, np.sin(t) * t], 1) * arm[:, None]
    return x / 3 + rng.normal(scale=0.1, size=(n, 2))


GENERATORS = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "pinwheel": _pinwheel,
    "checkerboard": _checkerboard,
    "spirals": _spirals,
}


def load(shape: str, split: str) -> Dataset:
    rng = np.random.default_rng(SEEDS[split] * 1000 + sorted(GENERATORS).index(shape))
    x = GENERATORS[shape](SIZES[split], rng).astype(np.float32)
    return Dataset(f"toy2d:{shape}", split, torch.from_numpy(x), kind="points")

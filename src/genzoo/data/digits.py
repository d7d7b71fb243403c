"""scikit-learn's 8x8 handwritten digits with genzoo's fixed split.

1797 images of 17 grey levels (0..16). No shuffling: the first 1000 images
train, the next 350 validate, the last 447 test, so every family is measured
on the same test images.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from genzoo.data.base import Dataset

SPLITS = {"train": slice(0, 1000), "val": slice(1000, 1350), "test": slice(1350, 1797)}
LEVELS = 17


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def load(split: str) -> Dataset:
    images, labels = _raw()
    sl = SPLITS[split]
    x = torch.from_numpy(images[sl].copy()).unsqueeze(1)  # (N, 1, 8, 8), levels 0..16
    y = torch.from_numpy(labels[sl].copy())
    return Dataset("digits", split, x, y, levels=LEVELS, num_classes=10, kind="image")

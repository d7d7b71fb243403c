"""Before / after grids of unpaired translation (CycleGAN's ``save_plots`` and ``genzoo translate``).

A grid holds groups of three rows: the inputs of one domain, their translations
into the other domain, and the round trip back, so that a reader sees at once
whether the style changed and the content (which digit) survived.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genzoo.data.domains import DOMAINS, check_side, domain_images
from genzoo.core.errors import GenzooError

ROW = 16  # images per row


def test_split_of(data):
    """The test split of the dataset ``data`` came from, or ``data`` itself when that cannot be loaded."""
    from genzoo.data import load_dataset

    if getattr(data, "split", "") == "test":
        return data
    try:
        return load_dataset(data.name, "test")
    except GenzooError:
        return data


def translation_rows(model, data, side: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n`` images of domain ``side``, their translations and their round trips."""
    side = check_side(side)
    x = domain_images(data, side)[0][:n]
    if len(x) == 0:
        raise GenzooError(f"{data.name} has no images in domain {side}")
    other = DOMAINS[1 - DOMAINS.index(side)]
    translated = model.translate(x, side)
    back = model.translate(translated, other)
    return x, translated, back


def save_translation_grid(model, data, side: str, path: str | Path, n: int = 32) -> Path:
    """PNG of input / translated / round-trip rows (groups of ``ROW`` images) for domain ``side``."""
    from genzoo.viz.samples import save_image_grid

    x, translated, back = translation_rows(model, data, side, n)
    groups = []
    for start in range(0, len(x), ROW):
        chunk = [t[start : start + ROW] for t in (x, translated, back)]
        pad = ROW - len(chunk[0])
        if pad:  # a short last group: blank tiles keep the three rows aligned
            chunk = [torch.cat([t, torch.zeros(pad, *t.shape[1:])]) for t in chunk]
        groups += chunk
    return save_image_grid(torch.cat(groups), path, data.levels, nrow=ROW)

"""Captioned digits: scikit-learn's digits, each with captions that genzoo writes from the image.

A caption names the digit (as a word or a numeral) and, often, one measured property of the
image's strokes, so that captions say something true about *this* drawing, not only its class:

* thickness: the mean level of the inked pixels (levels > 4); the thinnest third of the training
  images is "thin", the thickest third "thick" (terciles of the training split);
* width: columns holding ink; the narrowest third "narrow", the widest third "wide";
* slant: the correlation of ink column with ink row (a shear); leaning right or left past the
  outer sixths of the training split.

Templates come in two sets. ``TRAIN_TEMPLATES`` write every caption of every split (each
training image gets ``CAPTIONS_PER_IMAGE`` of them, so the training split holds every image that
many times); ``UNSEEN_TEMPLATES`` are phrasings that never occur in the data, for measuring
whether a text-conditioned model follows a prompt worded in a way it was not trained on.

``meta["captions"]`` holds one caption per example and ``y`` the digit; ``meta["text"]`` is
True, which the spec passes on (``spec["text"]``), so a family can condition on text.
Captions are a deterministic function of the split and ``SEED``.
"""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
import torch

from genzoo.data import digits
from genzoo.data.base import Dataset

NAME = "captioned-digits"
SEED = 31
CAPTIONS_PER_IMAGE = 4
INK = 4  # a pixel holds ink when its level (0..16) is above this

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# {w}: the digit as a word, {d}: as a numeral, {a}: an adjective measured from the image
TRAIN_TEMPLATES = (
    "a handwritten {w}",
    "the digit {d}",
    "a {a} {w}",
    "the digit {d}, drawn {a}",
    "number {w}",
    "a drawing of the number {d}",
    "{d}",
    "a {a} handwritten {d}",
    "a {w}, {a}",
    "the numeral {w}",
)
UNSEEN_TEMPLATES = (
    "please draw a {w}",
    "a picture showing {w}",
    "sketch of the number {d}",
    "{w}",
    "write the digit {w} by hand",
    "a {w} written with a pen",
)
PLAIN = "handwritten"  # the adjective when no measured property stands out


def _features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Thickness, width and slant of each (8, 8) image of levels 0..16."""
    ink = images > INK
    count = ink.sum((1, 2)).clip(min=1)
    thickness = (images * ink).sum((1, 2)) / count
    width = ink.any(1).sum(1).astype(np.float64)
    rows, cols = np.mgrid[0:8, 0:8]
    slant = np.zeros(len(images))
    for i, m in enumerate(ink):
        r, c = rows[m].astype(float), cols[m].astype(float)
        if len(r) > 2 and r.std() > 0 and c.std() > 0:
            # ink further right near the top (small row) is a rightward lean: minus the correlation
            slant[i] = -np.corrcoef(r, c)[0, 1]
    return {"thickness": thickness, "width": width, "slant": slant}


@lru_cache(maxsize=1)
def _thresholds() -> dict[str, tuple[float, float]]:
    """(low, high) cut points of each property on the training split."""
    f = _features(digits._raw()[0][digits.SPLITS["train"]])
    return {
        "thickness": tuple(np.quantile(f["thickness"], [1 / 3, 2 / 3])),
        "width": tuple(np.quantile(f["width"], [1 / 3, 2 / 3])),
        "slant": tuple(np.quantile(f["slant"], [1 / 6, 5 / 6])),
    }


def adjectives(images: np.ndarray) -> list[list[str]]:
    """For each image, the adjectives its measured properties earn (possibly none)."""
    f, cut = _features(images), _thresholds()
    out = []
    for i in range(len(images)):
        words = []
        if f["thickness"][i] <= cut["thickness"][0]:
            words.append("thin")
        elif f["thickness"][i] >= cut["thickness"][1]:
            words.append("thick")
        if f["width"][i] <= cut["width"][0]:
            words.append("narrow")
        elif f["width"][i] >= cut["width"][1]:
            words.append("wide")
        if f["slant"][i] >= cut["slant"][1]:
            words.append("slanted")
        elif f["slant"][i] <= cut["slant"][0]:
            words.append("left-leaning")
        out.append(words)
    return out


def caption(digit: int, adjective: str, template: str) -> str:
    return template.format(w=WORDS[digit], d=str(digit), a=adjective)


def prompts(digit: int, unseen: bool = False) -> list[str]:
    """Prompts asking for ``digit`` without a property: the training phrasings, or the unseen ones."""
    templates = UNSEEN_TEMPLATES if unseen else [t for t in TRAIN_TEMPLATES if "{a}" not in t]
    return [caption(digit, PLAIN, t) for t in templates]


def load(split: str) -> Dataset:
    images, labels = digits._raw()
    sl = digits.SPLITS[split]
    imgs, labs = images[sl], labels[sl]
    per_image = CAPTIONS_PER_IMAGE if split == "train" else 1
    rng = random.Random(f"{SEED}:{split}")
    adj = adjectives(imgs)
    rows, captions = [], []
    for i in range(len(imgs)):
        for _ in range(per_image):
            template = rng.choice(TRAIN_TEMPLATES)
            a = rng.choice(adj[i]) if adj[i] and "{a}" in template else PLAIN
            rows.append(i)
            captions.append(caption(int(labs[i]), a, template))
    idx = np.array(rows)
    x = torch.from_numpy(imgs[idx].copy()).unsqueeze(1)
    y = torch.from_numpy(labs[idx].copy())
    meta = {"captions": captions, "text": True, "image_index": idx.tolist()}
    return Dataset(NAME, split, x, y, levels=digits.LEVELS, num_classes=10, meta=meta, kind="image")

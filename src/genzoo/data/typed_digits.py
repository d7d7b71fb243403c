"""Typed digits: 0-9 rendered offline from fonts, reduced to 8x8 images of 17 levels like ``digits``.

scikit-learn's digits (UCI optdigits) were made by normalizing each handwritten
digit into a 32x32 binary bitmap and counting the set pixels in each 4x4 block,
which gives 8x8 images with levels 0..16. Typed digits go through the same
reduction: each glyph is drawn with Pillow, cropped to its ink, scaled to fill
the 32x32 box (height 26-32 pixels, the width it takes), shifted by up to 2
pixels, binarized, and block-counted. So the two domains differ in style (font
strokes against pen strokes), not in format, which is what unpaired translation
between them needs.

Fonts: Pillow's built-in scalable font (``ImageFont.load_default(size=...)``,
shipped inside Pillow, so it is the same everywhere) plus every TrueType /
OpenType font under ``/usr/share/fonts`` (on Debian: the DejaVu family). The
images depend on the fonts a machine has; ``meta["fonts"]`` lists them and
``meta["sha256"]`` fingerprints the pixels, so two machines can check that they
hold the same data.

Split: 3000 images (300 per digit) with seeded rendering settings, shuffled
once with a fixed seed; the first 2000 train, the next 500 validate, the last
500 test.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from genzoo.data.base import Dataset
from genzoo.core.errors import GenzooError

NAME = "typed-digits"
LEVELS = 17
PER_DIGIT = 300
SPLITS = {"train": slice(0, 2000), "val": slice(2000, 2500), "test": slice(2500, 3000)}
FONT_DIRS = (Path("/usr/share/fonts"),)
FONT_SUFFIXES = (".ttf", ".otf")
BUILTIN_FONT = "pillow-builtin"
CANVAS = 32  # the optdigits bitmap size
RENDER_SIZE = 64  # glyphs are drawn at this size, then scaled into the 32x32 box
SEED = 2024


def font_sources() -> list[str]:
    """The fonts typed digits are drawn with: Pillow's built-in one, then system fonts by path."""
    found = sorted(str(p) for d in FONT_DIRS if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in FONT_SUFFIXES)
    return [BUILTIN_FONT] + [f for f in found if _has_digits(f)]


@lru_cache(maxsize=None)
def _font(source: str, size: int):
    from PIL import ImageFont

    if source == BUILTIN_FONT:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(source, size=size)


def _has_digits(source: str) -> bool:
    """Symbol and icon fonts draw boxes or nothing for '0'..'9': keep fonts whose digits have distinct ink."""
    try:
        glyphs = {_glyph(source, str(d), 0).tobytes() for d in range(10)}
    except OSError:
        return False
    return len(glyphs) == 10


@lru_cache(maxsize=4096)
def _glyph(source: str, char: str, stroke: int):
    """The digit's ink as a greyscale image cropped to its bounding box (cached: callers never modify it)."""
    from PIL import Image, ImageDraw

    font = _font(source, RENDER_SIZE)
    canvas = Image.new("L", (RENDER_SIZE * 2, RENDER_SIZE * 2), 0)
    ImageDraw.Draw(canvas).text((RENDER_SIZE // 2, RENDER_SIZE // 4), char, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    box = canvas.getbbox()
    if box is None:
        raise OSError(f"font {source} draws nothing for {char!r}")
    return canvas.crop(box)


def render(digit: int, source: str, *, stroke: int, height: int, dx: int, dy: int, threshold: int = 128) -> np.ndarray:
    """One typed digit as an (8, 8) array of levels 0..16, built the way optdigits was.

    ``stroke`` thickens the glyph (pixels at render size), ``height`` is the glyph's height inside
    the 32x32 box (its width follows the font's aspect), ``dx``/``dy`` shift it off-centre."""
    from PIL import Image

    glyph = _glyph(source, str(digit), stroke)
    w, h = glyph.size
    width = max(1, min(CANVAS, round(w * height / h)))
    small = glyph.resize((width, height), Image.Resampling.LANCZOS)
    box = np.zeros((CANVAS, CANVAS), np.uint8)
    top = int(np.clip((CANVAS - height) // 2 + dy, 0, CANVAS - height))
    left = int(np.clip((CANVAS - width) // 2 + dx, 0, CANVAS - width))
    box[top : top + height, left : left + width] = np.asarray(small)
    bits = (box >= threshold).astype(np.int64)
    return bits.reshape(8, 4, 8, 4).sum((1, 3))  # set pixels per 4x4 block: 0..16


def build(fonts: list[str] | None = None, per_digit: int = PER_DIGIT, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All typed digits, shuffled once: images (N, 8, 8) of levels, labels (N,), and the fonts used."""
    fonts = fonts if fonts is not None else font_sources()
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for digit in range(10):
        for _ in range(per_digit):
            source = fonts[int(rng.integers(len(fonts)))]
            settings = dict(stroke=int(rng.integers(0, 4)), height=int(rng.integers(26, 33)),
                            dx=int(rng.integers(-2, 3)), dy=int(rng.integers(-2, 3)))
            images.append(render(digit, source, **settings))
            labels.append(digit)
    order = np.random.default_rng(seed + 1).permutation(len(images))
    return np.stack(images)[order].astype(np.float32), np.array(labels, np.int64)[order], fonts


@lru_cache(maxsize=1)
def _all() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    images, labels, fonts = build()
    if len(images) < SPLITS["test"].stop:
        raise GenzooError(f"typed digits: only {len(images)} images rendered; expected {SPLITS['test'].stop}")
    digest = hashlib.sha256(images.astype(np.uint8).tobytes() + labels.astype(np.uint8).tobytes()).hexdigest()
    return images, labels, tuple(fonts), digest


def load(split: str) -> Dataset:
    images, labels, fonts, digest = _all()
    sl = SPLITS[split]
    x = torch.from_numpy(images[sl].copy()).unsqueeze(1)  # (N, 1, 8, 8), levels 0..16
    y = torch.from_numpy(labels[sl].copy())
    meta = {"fonts": list(fonts), "sha256": digest}
    return Dataset(NAME, split, x, y, levels=LEVELS, num_classes=10, meta=meta, kind="image")

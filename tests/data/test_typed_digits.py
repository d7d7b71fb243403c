"""Typed digits (rendered from fonts like optdigits) and two-domain datasets for translation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import builtin_names, load_dataset
from genzoo.data import typed_digits
from genzoo.data.domains import domain_images
from genzoo.core.errors import GenzooError


def test_rendering_is_deterministic_and_seeded():
    fonts = typed_digits.font_sources()[:2]
    a_images, a_labels, _ = typed_digits.build(fonts, per_digit=3)
    b_images, b_labels, _ = typed_digits.build(fonts, per_digit=3)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    c_images, _, _ = typed_digits.build(fonts, per_digit=3, seed=typed_digits.SEED + 5)
    assert not np.array_equal(a_images, c_images), "the seed does not reach the rendering"


def test_splits_are_8x8_with_17_levels_and_every_class():
    for split, size in (("train", 2000), ("val", 500), ("test", 500)):
        d = load_dataset("typed-digits", split)
        assert d.kind == "image" and d.x.shape == (size, 1, 8, 8) and d.levels == 17 and d.num_classes == 10
        assert torch.equal(d.x, d.x.round()) and d.x.min() == 0 and d.x.max() == 16
        assert len(torch.unique(d.x)) == 17, "the block counts should use all 17 levels"
        assert torch.bincount(d.y, minlength=10).min() >= size // 20, "a class is (nearly) missing"
        assert d.meta["fonts"][0] == typed_digits.BUILTIN_FONT and len(d.meta["sha256"]) == 64
    assert "typed-digits" in builtin_names() and "digits2typed" in builtin_names()


def test_typed_digits_are_readable():
    """A nearest-neighbour classifier on the typed train split reads the test split far above
    chance (10%): 98% measured; each digit's images look alike across fonts and settings."""
    train, test = load_dataset("typed-digits", "train"), load_dataset("typed-digits", "test")
    nearest = torch.cdist(test.x.flatten(1), train.x.flatten(1)).argmin(1)
    assert (train.y[nearest] == test.y).float().mean() > 0.9


def test_one_glyph_matches_the_optdigits_reduction():
    """A full-height, centred '1' of a thick stroke: ink in the middle columns, none in the outer ones."""
    one = typed_digits.render(1, typed_digits.BUILTIN_FONT, stroke=2, height=32, dx=0, dy=0)
    assert one.shape == (8, 8) and one.dtype.kind == "i" and one.max() <= 16
    assert one[:, 3:5].sum() > 3 * one[:, [0, 7]].sum() and one[:, 3:5].sum() > 50


def test_digits2typed_pairs_the_two_domains():
    d = load_dataset("digits2typed", "test")
    hand, typed = load_dataset("digits", "test"), load_dataset("typed-digits", "test")
    assert d.kind == "domains" and d.x.shape == (500, 2, 1, 8, 8) and d.levels == 17
    a, ya = domain_images(d, "A")
    b, yb = domain_images(d, "b")
    assert torch.equal(a, hand.x) and torch.equal(ya, hand.y)
    assert torch.equal(b, typed.x) and torch.equal(yb, typed.y)
    with pytest.raises(GenzooError, match="A or B"):
        domain_images(d, "C")


def _write_images(folder, n, size, value):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full(size, (value + i) % 256, np.uint8)).save(folder / f"{i:03d}.png")


def test_user_folders_a_and_b(tmp_path):
    _write_images(tmp_path / "A", 20, (8, 8), 0)
    _write_images(tmp_path / "B", 30, (8, 8), 100)
    d = load_dataset(f"domains:{tmp_path}", "train")
    assert d.kind == "domains" and d.x.shape == (24, 2, 1, 8, 8) and d.levels == 256
    assert d.meta["sizes"] == {"A": 16, "B": 24}
    assert (domain_images(d, "A")[0] < 100).all() and (domain_images(d, "B")[0] >= 100).all()
    same = load_dataset(f"domains:{tmp_path / 'A'},{tmp_path / 'B'}", "train")
    assert torch.equal(same.x, d.x)


def test_user_folders_are_checked(tmp_path):
    _write_images(tmp_path / "A", 10, (8, 8), 0)
    with pytest.raises(GenzooError, match="A/ and B/"):
        load_dataset(f"domains:{tmp_path}", "train")
    _write_images(tmp_path / "B", 10, (16, 16), 0)
    with pytest.raises(GenzooError, match="one shape"):
        load_dataset(f"domains:{tmp_path}", "train")

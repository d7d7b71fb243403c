"""Datasets: built-in ``digits`` and ``toy2d:<shape>``, or a path to the user's own files.

>>> from genzoo.data import load_dataset
>>> train = load_dataset("digits", "train")
"""

from __future__ import annotations

from pathlib import Path

from genzoo.data import digits, files, toy2d
from genzoo.data.base import Dataset, dequantize, from_signed_unit, to_signed_unit  # noqa: F401
from genzoo.errors import GenzooError

SPLITS = ("train", "val", "test")


def builtin_names() -> list[str]:
    return ["digits"] + [f"toy2d:{s}" for s in sorted(toy2d.GENERATORS)]


def load_dataset(name: str, split: str = "train") -> Dataset:
    """Load one split of a built-in dataset, or of a user's folder / array file."""
    if split not in SPLITS:
        raise GenzooError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if name == "digits":
        return digits.load(split)
    if name.startswith("toy2d"):
        shape = name.partition(":")[2] or "moons"
        if shape not in toy2d.GENERATORS:
            raise GenzooError(f"unknown toy2d shape {shape!r}; valid: {', '.join(sorted(toy2d.GENERATORS))}")
        return toy2d.load(shape, split)
    if Path(name).exists() or "/" in name or name.endswith((".npy", ".npz")):
        return files.load(name, split)
    raise GenzooError(
        f"unknown dataset {name!r}; valid datasets: {', '.join(builtin_names())}, "
        "or a path to a folder of images / a .npy / .npz file"
    )

"""A user's own data: a folder of images, or .npy / .npz arrays.

Images: every readable image below the folder; an image inside a
sub-folder takes the sub-folder's name as its class label (the usual
one-folder-per-class layout). Images are kept as 8-bit levels (256 levels),
greyscale if every image is greyscale, else RGB.

Arrays: a .npy file, or a .npz with an ``x`` array (and optionally ``y``
labels). (N, 2)-like float arrays become points; (N, H, W) or (N, C, H, W)
arrays become images: integer arrays keep their levels (0..max), float
arrays must lie in [0, 1] and are quantized to 256 levels.

The split is deterministic: a seeded permutation, 80% train, 10% val,
10% test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genzoo.data.base import Dataset
from genzoo.core.errors import GenzooError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
ARRAY_SUFFIXES = {".npy", ".npz"}
SPLIT_FRACTIONS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


def split_rows(n: int, split: str, what: str, minimum: int = 10) -> np.ndarray:
    """Indices of ``split``'s rows among ``n``, in file order: a permutation seeded with 0 cut 80/10/10
    (the same rows every time, for every kind of user file)."""
    order = np.random.default_rng(0).permutation(n)
    lo, hi = SPLIT_FRACTIONS[split]
    idx = np.sort(order[int(lo * n) : int(hi * n)])
    if len(idx) == 0:
        raise GenzooError(f"{what}: {n} rows are too few for a {split} split (80/10/10 by row); provide at least {minimum}")
    return idx


def load(path: str | Path, split: str) -> Dataset:
    path = Path(path)
    if not path.exists():
        raise GenzooError(f"data path {str(path)!r} does not exist; pass a folder of images, a .npy or a .npz file")
    x, y, levels, class_names = _read(path)
    idx = split_rows(len(x), split, str(path))
    xt = torch.from_numpy(x[idx].astype(np.float32))
    yt = torch.from_numpy(y[idx].astype(np.int64)) if y is not None else None
    num_classes = len(class_names) if class_names else (int(y.max()) + 1 if y is not None else 0)
    meta = {"path": str(path.resolve()), "class_names": class_names}
    # The file format declares the kind: image folders and (N, [C,] H, W) arrays hold images, (N, D) arrays points.
    kind = "points" if x.ndim == 2 else "image"
    return Dataset(str(path), split, xt, yt, levels=levels, num_classes=num_classes, meta=meta, kind=kind)


def _read(path: Path):
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        arrays = [p for p in files if p.suffix.lower() in ARRAY_SUFFIXES]
        if images and arrays:
            raise GenzooError(f"{path}: holds both images and arrays; keep one kind of data per folder")
        if images:
            return _read_images(path, images)
        if len(arrays) == 1:
            return _read_array(arrays[0])
        if arrays:
            raise GenzooError(f"{path}: holds {len(arrays)} array files; pass one of them directly")
        raise GenzooError(
            f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or arrays (.npy, .npz) found; "
            "point --data at a folder that holds your data"
        )
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return _read_array(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise GenzooError(f"{path} is a single image; pass the folder that holds your images")
    raise GenzooError(f"{path}: unsupported file type {path.suffix!r}; use a folder of images, .npy or .npz")


def _read_images(root: Path, files: list[Path]):
    from PIL import Image, UnidentifiedImageError

    pixels, class_of = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                mode = "L" if im.mode in ("L", "1", "P", "LA", "I;16") and _is_grey(im) else "RGB"
                pixels.append(np.asarray(im.convert(mode)))
        except (UnidentifiedImageError, OSError) as e:
            raise GenzooError(f"cannot read image {f}: {e}; remove or replace the file") from e
        rel = f.relative_to(root)
        class_of.append(rel.parts[0] if len(rel.parts) > 1 else None)
    if any(p.ndim == 3 for p in pixels):  # mixed grey and colour: promote grey to RGB
        pixels = [np.repeat(p[..., None], 3, -1) if p.ndim == 2 else p for p in pixels]
    shapes = {p.shape for p in pixels}
    if len(shapes) > 1:
        listed = ", ".join(f"{s[1]}x{s[0]}" for s in sorted(shapes)[:5])
        raise GenzooError(f"{root}: images have different sizes ({listed}); resize them to one size first")
    x = np.stack(pixels)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    y, names = None, []
    if all(c is not None for c in class_of):
        names = sorted(set(class_of))
        y = np.array([names.index(c) for c in class_of])
    return x, y, 256, names


def _is_grey(im) -> bool:
    if im.mode != "P":
        return True
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _read_array(f: Path):
    try:
        loaded = np.load(f, allow_pickle=False)
    except Exception as e:  # numpy raises several types for corrupt files
        raise GenzooError(f"cannot read array file {f}: {e}") from e
    y = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if "x" not in loaded.files:
            raise GenzooError(f"{f}: a .npz needs an array named 'x' (and optionally 'y'); found {loaded.files}")
        x = loaded["x"]
        y = loaded["y"] if "y" in loaded.files else None
    else:
        x = loaded
    if y is not None and len(y) != len(x):
        raise GenzooError(f"{f}: 'x' has {len(x)} rows but 'y' has {len(y)}")
    if x.dtype.kind not in "iuf" or x.ndim < 2:
        raise GenzooError(f"{f}: expected a numeric array of shape (N, D), (N, H, W) or (N, C, H, W), got {x.dtype} {x.shape}")
    if not np.isfinite(x.astype(np.float64)).all():
        raise GenzooError(f"{f}: array holds NaN or infinite values; clean the data first")
    if x.ndim == 2:
        return x.astype(np.float32), y, None, []
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise GenzooError(f"{f}: expected at most 4 dimensions (N, C, H, W), got {x.shape}")
    if x.dtype.kind in "iu":
        if x.min() < 0:
            raise GenzooError(f"{f}: integer images must be non-negative levels, found {x.min()}")
        levels = 256 if x.dtype == np.uint8 else int(x.max()) + 1
    else:
        if x.min() < 0 or x.max() > 1:
            raise GenzooError(f"{f}: float images must lie in [0, 1] (found [{x.min():.3g}, {x.max():.3g}])")
        x, levels = np.round(x * 255), 256
    return x, y, levels, []

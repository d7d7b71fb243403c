"""Two image domains for unpaired translation (CycleGAN): data of kind "domains".

Each example is one image of domain A beside one image of domain B,
``x[i] = (A[i % n_A], B[i % n_B])`` with shape (N, 2, C, H, W) and
N = max(n_A, n_B). The pairing carries no meaning (the domains are unpaired):
it only lets the Trainer draw batches, checkpoint and resume exactly as for
any other dataset. The first ``n_A`` rows hold every A image once and the first
``n_B`` rows every B image once (``domain_images``), in their own order.

Built-in: ``digits2typed`` (A: handwritten ``digits``, B: ``typed-digits``).
User data: ``domains:ROOT`` (ROOT holds folders ``A/`` and ``B/``) or
``domains:PATH_A,PATH_B``; each side is read like any image folder or array
file (``genzoo.data.files``), with its own deterministic split.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genzoo.data.base import Dataset
from genzoo.core.errors import GenzooError

BUILTIN = "digits2typed"
PREFIX = "domains:"
DOMAINS = ("A", "B")


def is_domains(name: str) -> bool:
    return name == BUILTIN or name.startswith(PREFIX)


def load(name: str, split: str) -> Dataset:
    """One split of a two-domain dataset (``digits2typed`` or ``domains:...``)."""
    from genzoo.data import digits, files, typed_digits

    if name == BUILTIN:
        a, b = digits.load(split), typed_digits.load(split)
    else:
        path_a, path_b = _user_paths(name.removeprefix(PREFIX))
        a, b = files.load(path_a, split), files.load(path_b, split)
    return pair(a, b, name, split)


def _user_paths(spec: str) -> tuple[str, str]:
    parts = [p for p in spec.split(",") if p]
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1:
        root = Path(parts[0])
        if (root / "A").is_dir() and (root / "B").is_dir():
            return str(root / "A"), str(root / "B")
        raise GenzooError(f"{root} needs two sub-folders A/ and B/ (one per domain); or pass domains:PATH_A,PATH_B")
    raise GenzooError(f"expected domains:ROOT (holding A/ and B/) or domains:PATH_A,PATH_B, got {PREFIX}{spec}")


def pair(a: Dataset, b: Dataset, name: str, split: str) -> Dataset:
    """Stack two image datasets of one shape and one number of levels into a "domains" dataset."""
    for side, d in zip(DOMAINS, (a, b)):
        if d.kind != "image":
            raise GenzooError(f"domain {side} ({d.name}) holds {d.kind} data; both domains must be images")
    if a.shape != b.shape:
        raise GenzooError(f"domain A images are {_size(a.shape)} but domain B images are {_size(b.shape)}; "
                          "resize (and convert to the same colour mode) so that both domains have one shape")
    if a.levels != b.levels:
        raise GenzooError(f"domain A has {a.levels} levels per pixel but domain B has {b.levels}; quantize both alike")
    n = max(len(a), len(b))
    rows_a, rows_b = torch.arange(n) % len(a), torch.arange(n) % len(b)
    x = torch.stack([a.x[rows_a], b.x[rows_b]], 1)
    y = None
    if a.y is not None and b.y is not None:
        y = torch.stack([a.y[rows_a], b.y[rows_b]], 1)  # (N, 2): each side's own label, kept for evaluation
    meta = {"domains": {"A": a.name, "B": b.name}, "sizes": {"A": len(a), "B": len(b)},
            "num_classes": {"A": a.num_classes, "B": b.num_classes}}
    return Dataset(name, split, x, y, levels=a.levels, num_classes=0, meta=meta, kind="domains")


def domain_images(data: Dataset, side: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every image of one domain once, (n, C, H, W), with its labels when it has them."""
    side = check_side(side)
    if data.kind != "domains":
        raise GenzooError(f"{data.name} is {data.kind} data, not two domains")
    col = DOMAINS.index(side)
    n = data.meta["sizes"][side]
    return data.x[:n, col], (data.y[:n, col] if data.y is not None else None)


def check_side(side: str) -> str:
    side = str(side).upper()
    if side not in DOMAINS:
        raise GenzooError(f"domain must be A or B, got {side!r}")
    return side


def _size(shape) -> str:
    c, h, w = shape
    return f"{w}x{h} with {c} channel(s)"

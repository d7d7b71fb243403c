"""The dataset container every family consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from genzoo.family import KINDS

# The rank of ``x`` each kind holds: images (N, C, H, W), points (N, D), tokens (N, T) windows or one (T,) stream.
RANKS = {"image": (4,), "points": (2,), "tokens": (1, 2)}


@dataclass
class Dataset:
    """One split of a dataset, held in memory.

    ``kind`` is declared by whoever builds the dataset ("image", "points" or "tokens"), never
    guessed from the tensor's rank: a (N, T) batch of token windows has the rank of points.

    ``x`` is float32 (token ids: int64). For discrete data (``levels`` is set) it holds integer
    levels ``0 .. levels-1``; models map them to their own scale (see
    ``to_signed_unit`` and ``dequantize``) so that every likelihood is reported
    for the same discrete data. For continuous data (``levels`` is None) it
    holds the values themselves.
    """

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor | None = None
    levels: int | None = None
    num_classes: int = 0
    meta: dict = field(default_factory=dict)
    kind: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: declare its kind, one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.x.ndim not in RANKS[self.kind]:
            raise ValueError(f"dataset {self.name!r}: {self.kind} data has rank {' or '.join(map(str, RANKS[self.kind]))}, "
                             f"got shape {tuple(self.x.shape)}")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"dataset {self.name!r}: {len(self.x)} examples but {len(self.y)} labels")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def dims(self) -> int:
        return int(torch.tensor(self.shape).prod())

    def __len__(self) -> int:
        return len(self.x)

    def spec(self) -> dict:
        """What a model needs to know to be built for this data (saved in config.json)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "levels": self.levels,
            "num_classes": self.num_classes,
        }


def to_signed_unit(levels_x: torch.Tensor, levels: int) -> torch.Tensor:
    """Map integer levels 0..L-1 to the centres of L equal bins of [-1, 1]."""
    return (2 * levels_x + 1) / levels - 1


def from_signed_unit(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse of ``to_signed_unit``: the bin of [-1, 1] that x falls in, as a level."""
    return ((x + 1) / 2 * levels).floor().clamp(0, levels - 1)


def dequantize(levels_x: torch.Tensor, levels: int, noise: torch.Tensor) -> torch.Tensor:
    """Uniform dequantization onto [-1, 1]: noise ~ U[0, 1) fills a level's whole bin.

    The density of the result relates to the discrete probability by
    ``log P(k) >= E[log p(x)] + D * log(2 / L)``: see ``eval.likelihood``.
    """
    return (levels_x + noise) / levels * 2 - 1

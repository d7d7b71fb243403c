"""The dataset container every family consumes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from genzoo.core.errors import GenzooError
from genzoo.family import KINDS

# The rank of ``x`` each kind holds: images (N, C, H, W), points (N, D), tokens (N, T) windows or one (T,) stream,
# domains (N, 2, C, H, W): an image of domain A beside one of domain B (see genzoo.data.domains),
# pairs (N, 2, L): input and target token ids, padded with -1 (see genzoo.data.pairs),
# audio (N, 1, T): mu-law levels of mono clips (see genzoo.data.audio).
RANKS = {"image": (4,), "points": (2,), "tokens": (1, 2), "domains": (5,), "pairs": (3,), "audio": (3,), "table": (2,)}


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
    window: int = 0  # a token stream ((T,) ids): each example is a window of this many tokens (set by the model)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: declare its kind, one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.x.ndim not in RANKS[self.kind]:
            raise ValueError(f"dataset {self.name!r}: {self.kind} data has rank {' or '.join(map(str, RANKS[self.kind]))}, "
                             f"got shape {tuple(self.x.shape)}")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"dataset {self.name!r}: {len(self.x)} examples but {len(self.y)} labels")

    @property
    def is_stream(self) -> bool:
        """Token ids held as one (T,) stream, cut into windows on demand."""
        return self.kind == "tokens" and self.x.ndim == 1

    def with_window(self, window: int) -> "Dataset":
        """This stream with examples of ``window`` tokens (a model's context + 1: inputs and next-token targets)."""
        if not self.is_stream:
            raise GenzooError(f"dataset {self.name!r} is not a token stream; windows apply to token streams only")
        if window < 2 or len(self.x) < window:
            raise GenzooError(f"the {self.split} split of {self.name!r} has {len(self.x)} tokens, too few for windows of "
                              f"{window}; use a shorter context or more text")
        return dataclasses.replace(self, window=window)

    def num_examples(self) -> int:
        if self.is_stream:
            if not self.window:
                raise GenzooError(f"token stream {self.name!r} has no window length yet (the model sets it: prepare_data)")
            return len(self.x) - self.window + 1
        return len(self.x)

    def batch_rows(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """The examples of ``step``'s global batch: a function of (seed, step) only, so a resumed run
        and any split across processes see the same batch. Held examples: a fresh seeded permutation
        every epoch. A token stream: windows at positions drawn uniformly with replacement (a stream
        of millions of tokens has as many windows; a permutation of them per step would cost more
        than the step)."""
        if self.is_stream:
            g = torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + 29) % (2**63))
            return torch.randint(self.num_examples(), (batch_size,), generator=g)
        return batch_indices(len(self.x), batch_size, step, seed)

    def take(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The examples ``rows`` (token streams: (len(rows), window) windows) and their labels."""
        if self.is_stream:
            return self.x[rows[:, None] + torch.arange(self.window)], None
        return self.x[rows], (self.y[rows] if self.y is not None else None)

    def eval_examples(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every example once, for validation. A stream: consecutive windows overlapping by one
        token, so each token after the first is predicted exactly once."""
        if self.is_stream:
            step = self.window - 1
            starts = torch.arange(0, len(self.x) - self.window + 1, step)
            return self.take(starts)
        return self.x, self.y

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
        spec = {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "levels": self.levels,
            "num_classes": self.num_classes,
        }
        if self.meta.get("text"):  # every example has a caption (meta["captions"]): text-to-image data
            spec["text"] = True
        if self.kind == "audio":  # (N, 1, T) mu-law levels: how fast to play them
            spec["sample_rate"] = self.meta.get("sample_rate")
        if self.kind in ("tokens", "pairs"):
            spec["vocab_size"] = self.meta.get("vocab_size")
            spec["eos_id"] = self.meta.get("eos_id")
        if self.kind == "table":  # the fitted encoding: a checkpoint decodes its own samples (genzoo.data.table)
            spec["table"] = self.meta["table"]
        return spec


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Rows of the global batch for ``step``: a fresh seeded permutation every epoch, last partial batch dropped."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise GenzooError(f"batch size {batch_size} is larger than the {n} training examples; lower --batch-size")
    epoch, pos = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 10_007 + epoch)
    return torch.randperm(n, generator=g)[pos * batch_size : (pos + 1) * batch_size]


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

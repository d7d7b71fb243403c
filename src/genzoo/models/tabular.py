"""What the table families share: the encoded row's blocks, output heads, and conditions on a column.

A table model works on encoded rows (``genzoo.data.table``): ``value`` blocks (one number in about
[-1, 1], a value's offset within its mode) and one-hot blocks (a numeric column's mode, its missing
indicator, a categorical column's category). ``sample`` returns encoded rows; ``genzoo.data.table.decode``
with the model's data spec turns them into a DataFrame.

Conditions: ``condition="income=>50K"`` (or ``{"income": ">50K"}``) on a categorical or boolean
column; each family says how it honours one (``condition_method``).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
from torch.nn import functional as F

from genzoo.core.errors import GenzooError
from genzoo.data import table as tables
from genzoo.models.base import GenerativeModel, generator_device

REJECTION_ROUNDS = 50  # rejection sampling gives up after this many rounds of n draws


@contextmanager
def cpu_threads(device: torch.device, threads: int = 1):
    """One CPU thread for the block. Why: a table model's matrices are small (rows x a few hundred), and
    on 2 shared, busy cores a TVAE step took 850 ms on 2 threads (OpenMP spin-waiting) and 50 ms on 1."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(method):
    """Decorator: run a model method under ``cpu_threads(model.device)``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with cpu_threads(self.device):
            return method(self, *args, **kwargs)

    return wrapper


class TableModel(GenerativeModel):
    """Base of the table families: the blocks of the encoded row and the condition grammar.
    Training steps and sampling run on one CPU thread (``cpu_threads``)."""

    condition_method = "rejection"  # "rejection" (draw, keep matching rows) or "conditional" (the generator takes it)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("training_step", "sample"):
            if name in cls.__dict__:
                setattr(cls, name, single_threaded(cls.__dict__[name]))

    @single_threaded
    def training_step(self, batch, step, opt):
        return GenerativeModel.training_step(self, batch, step, opt)

    def _bind_table(self) -> dict:
        spec = self.config.data.get("table")
        if not spec or self.config.data.get("kind") != "table":
            raise GenzooError(f"{self.family} models tables; train it on a table (--data file.csv, diamonds, penguins, cancer)")
        self.table = spec
        self.width = tables.width(spec)
        self.blocks = []  # (kind, start, width, column)
        at = 0
        for kind, w, col in spec["segments"]:
            self.blocks.append((kind, at, w, col))
            at += w
        self.value_index = [s for kind, s, w, c in self.blocks if kind == "value"]
        return spec

    # ---- heads ------------------------------------------------------------------------------------
    def onehot_blocks(self):
        return [(s, w) for kind, s, w, c in self.blocks if kind != "value"]

    def block_loss(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-row cross-entropy of every one-hot block (the category is the target's largest entry)."""
        total = raw.new_zeros(len(raw))
        for s, w in self.onehot_blocks():
            total = total + F.cross_entropy(raw[:, s : s + w], x[:, s : s + w].argmax(1), reduction="none")
        return total

    def draw_blocks(self, raw: torch.Tensor, generator, temperature: float = 1.0) -> torch.Tensor:
        """One-hot blocks drawn from their softmax (with ``generator``); value entries left as given."""
        out = raw.clone()
        for s, w in self.onehot_blocks():
            p = torch.softmax(raw[:, s : s + w].double() / max(temperature, 1e-4), 1)
            k = torch.multinomial(p.cpu(), 1, generator=generator).squeeze(1) if generator is None or generator.device.type == "cpu" \
                else torch.multinomial(p, 1, generator=generator).squeeze(1)
            out[:, s : s + w] = F.one_hot(k.to(raw.device), w).to(raw.dtype)
        return out

    # ---- conditions -------------------------------------------------------------------------------
    def check_condition(self, condition, n: int):
        """``"col=value"`` / ``{"col": value}`` -> (start, width, category index) of the asked category's
        block; a clear error for anything else (class ids, text, unknown columns or values)."""
        if condition is None:
            return None
        if isinstance(condition, dict) and len(condition) == 1:
            column, value = next(iter(condition.items()))
        elif isinstance(condition, str) and "=" in condition:
            column, _, value = condition.partition("=")
            column, value = column.strip(), value.strip().strip("'\"")
        else:
            raise GenzooError(f"a {self.family} model takes a condition on a column, COLUMN=VALUE (e.g. income='>50K'); got {condition!r:.80}")
        i = tables.column_index(self.table, str(column))
        col = self.table["columns"][i]
        if col["type"] not in ("categorical", "boolean"):
            raise GenzooError(f"column {column!r} is {col['type']}; conditions apply to categorical or boolean columns")
        names = ["NaN" if k is None else (str(k).lower() if isinstance(k, bool) else str(k)) for k in col["categories"]]
        key = str(value).lower() if col["type"] == "boolean" else str(value)
        if key not in names:
            raise GenzooError(f"column {column!r} has no category {value!r}; its categories: {', '.join(names[:20])}")
        start, w = next((s, w) for kind, s, w, c in self.blocks if c == i and kind == "category")
        return start, w, names.index(key)

    def conditioned(self, draw, n: int, condition, generator) -> torch.Tensor:
        """``n`` rows from ``draw(m, generator)``; with a condition, by rejection: only rows whose block
        holds the asked category are kept (an error when the model almost never makes it)."""
        cond = self.check_condition(condition, n)
        if cond is None:
            return draw(n, generator)
        start, w, k = cond
        kept, got = [], 0
        for _ in range(REJECTION_ROUNDS):
            x = draw(max(n, 64), generator)
            x = x[x[:, start : start + w].argmax(1) == k]
            kept.append(x)
            got += len(x)
            if got >= n:
                return torch.cat(kept)[:n]
        raise GenzooError(f"rejection sampling found {got} of {n} rows with {condition} in {REJECTION_ROUNDS} rounds: the model "
                          "rarely generates it; train longer or ask for fewer rows")


def device_of(generator, model: GenerativeModel) -> torch.device:
    return generator_device(generator, model.device)

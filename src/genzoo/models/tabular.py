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
MARGINAL_DRAWS = 8192  # draws of z that estimate a block's share (marginal_biases); its error ~ 0.5% / sqrt(share)
MARGINAL_ITERATIONS = 200  # L-BFGS steps at most; they stop once the shares match (tests/models/test_table_marginals.py)
MARGINAL_SEED = 20260  # marginal_biases' own generator


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

    def draw_blocks(self, raw: torch.Tensor, generator, temperature: float = 1.0,
                    biases: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """One-hot blocks drawn from softmax(logits / T + bias) (with ``generator``); value entries left
        as given. ``biases`` (block start -> a bias per entry, from ``marginal_biases``) default to 0."""
        out = raw.clone()
        biases = biases or {}
        for s, w in self.onehot_blocks():
            logits = raw[:, s : s + w].double() / max(temperature, 1e-4)
            p = torch.softmax(logits + biases[s].to(logits.device) if s in biases else logits, 1)
            k = torch.multinomial(p.cpu(), 1, generator=generator).squeeze(1) if generator is None or generator.device.type == "cpu" \
                else torch.multinomial(p, 1, generator=generator).squeeze(1)
            out[:, s : s + w] = F.one_hot(k.to(raw.device), w).to(raw.dtype)
        return out

    @torch.no_grad()
    def marginal_biases(self, decode_raw, latent_dim: int, temperature: float) -> dict[int, torch.Tensor]:
        """Per one-hot block, the bias b that gives softmax(logits / T + b) the model's own marginal.

        Why: a temperature T < 1 sharpens each row's categories towards what its z makes most likely,
        which keeps the columns of a row consistent (ML efficacy up), but it also moves every block's
        share towards its majority category (diamonds' `color`: column shape 0.95 at T = 1, 0.91 at
        0.3). With b the shares stay those of the model at T = 1, E_z softmax(logits(z)), and only the
        assignment of categories to rows sharpens.

        b solves E_z softmax(logits / T + b) = share over MARGINAL_DRAWS draws of z ~ N(0, I) (a fixed
        generator: the biases belong to the model and T, not to a sample's seed). The left side minus
        the right is the gradient of the convex F(b) = E_z logsumexp(logits / T + b) - b . share, so b
        is F's minimum, found by L-BFGS (proportional fitting, b += log share - log current, crawls at
        small T: 8e-4 off after 50 steps at T = 0.3). The measured gain: ``genzoo.models.tvae``."""
        key = (temperature, tuple(p._version for p in self.parameters()))  # a training step bumps the versions
        cached = getattr(self, "_marginal_biases", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        g = torch.Generator().manual_seed(MARGINAL_SEED)
        z = torch.randn(MARGINAL_DRAWS, latent_dim, generator=g).to(self.device)
        raw = decode_raw(z).double()
        t = max(temperature, 1e-4)
        out = {}
        for s, w in self.onehot_blocks():
            logits = raw[:, s : s + w] / t
            share = torch.softmax(raw[:, s : s + w], 1).mean(0)
            b = torch.zeros(w, dtype=raw.dtype, device=raw.device, requires_grad=True)
            opt = torch.optim.LBFGS([b], max_iter=MARGINAL_ITERATIONS, tolerance_grad=1e-10, tolerance_change=1e-14,
                                    line_search_fn="strong_wolfe")

            def objective():
                opt.zero_grad()
                f = torch.logsumexp(logits + b, 1).mean() - (b * share).sum()
                f.backward()
                return f

            with torch.enable_grad():
                opt.step(objective)
            out[s] = b.detach()
        self._marginal_biases = (key, out)
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

"""Text pairs: (input, target) strings as one dataset of kind "pairs", what text-to-text models (T5) train on.

Sources:

- a ``.jsonl`` file, one ``{"input": "...", "target": "..."}`` object per non-blank line (other
  fields are ignored). A ``.jsonl`` whose first record has ``input`` or ``target`` is pairs; one
  with ``text`` stays a text corpus (``genzoo.data.text``). Split by row like other user data
  (``genzoo.data.files``): a permutation seeded with 0, 80% train, 10% val, 10% test, file order
  kept within a split; every split must hold a pair, so a file needs at least 10.
- ``docsig``: a function's docstring -> its signature line (``genzoo.data.docsig``), split by module.

``x`` is (N, 2, L) int64: ``x[:, 0]`` the input's token ids, ``x[:, 1]`` the target's, each
right-padded with ``PAD`` (-1, no token) to the longest side in the split and cut to
``MAX_TOKENS``. No end-of-sequence id is added: the model appends its own. The tokenizer is
trained on the training split only (each pair as ``input + "\\n" + target``) and rides along in
``meta["tokenizer"]``, as for text; ``meta["texts"]`` keeps the strings (for exact-match scores).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from genzoo.core.errors import GenzooError
from genzoo.data.base import Dataset

NAME = "docsig"
PAD = -1
MAX_TOKENS = 512  # per side: bounds memory (N x 2 x L) whatever one long line holds; models cut shorter
MIN_PAIRS = 10  # 80/10/10 leaves every split at least one pair


def _first_record(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    return json.loads(line)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # the loader that claims the file reports it
    return None


def is_pairs(name: str) -> bool:
    """Whether ``name`` is pairs data: ``docsig``, or a ``.jsonl`` whose first record has input/target fields."""
    if name == NAME:
        return True
    if not str(name).lower().endswith(".jsonl") or not Path(name).is_file():
        return False
    record = _first_record(Path(name))
    return isinstance(record, dict) and ("input" in record or "target" in record) and "text" not in record


def read_jsonl(path: str | Path) -> list[tuple[str, str]]:
    """Every (input, target) of a JSONL file, or a one-line GenzooError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise GenzooError(f'{path} does not exist; pass a .jsonl file with one {{"input": ..., "target": ...}} per line')
    from genzoo.data.text import _read_text, json_lines

    pairs = []
    for n, rec in json_lines(path, _read_text(path).splitlines()):
        if not isinstance(rec, dict):
            raise GenzooError(f'{path}, line {n}: expected an object like {{"input": "...", "target": "..."}}, got {type(rec).__name__}')
        for field in ("input", "target"):
            if field not in rec:
                raise GenzooError(f'{path}, line {n}: no "{field}" field; every line needs string fields "input" and "target"')
            if not isinstance(rec[field], str):
                raise GenzooError(f'{path}, line {n}: the "{field}" field is {type(rec[field]).__name__}, not a string')
        pairs.append((rec["input"], rec["target"]))
    if not pairs:
        raise GenzooError(f'{path}: holds no pairs (no non-blank lines); write one {{"input": ..., "target": ...}} per line')
    return pairs


@functools.lru_cache(maxsize=3)
def _docsig(split: str) -> tuple[tuple[str, str], ...]:
    from genzoo.data import docsig

    return tuple(docsig.load_pairs(split))  # parses every pycode module: about 4 s, so kept


def load_texts(name: str, split: str) -> list[tuple[str, str]]:
    """The (input, target) strings of one split."""
    if name == NAME:
        return list(_docsig(split))
    from genzoo.data.files import split_rows

    pairs = read_jsonl(name)
    return [pairs[i] for i in split_rows(len(pairs), split, name, MIN_PAIRS)]


def tokenizer_texts(name: str) -> list[str]:
    """What the tokenizer trains on: the training split's pairs, input and target on two lines."""
    return [a + "\n" + b for a, b in load_texts(name, "train")]


def encode(pairs: list[tuple[str, str]], tokenizer, max_tokens: int = MAX_TOKENS) -> tuple[torch.Tensor, int]:
    """(x, cut): the (N, 2, L) padded ids of ``pairs`` and how many sides were cut to ``max_tokens``."""
    sides = [tokenizer.encode_batch([p[0] for p in pairs]), tokenizer.encode_batch([p[1] for p in pairs])]
    cut = sum(len(r) > max_tokens for side in sides for r in side)
    L = max(1, min(max_tokens, max(len(r) for side in sides for r in side)))
    x = torch.full((len(pairs), 2, L), PAD, dtype=torch.long)
    for s, side in enumerate(sides):
        for i, r in enumerate(side):
            r = r[:max_tokens]
            x[i, s, : len(r)] = torch.tensor(r, dtype=torch.long)
    return x, cut


def load(name: str, split: str, tokenizer) -> Dataset:
    """One split of pairs data as a "pairs" Dataset (see the module doc)."""
    pairs = load_texts(name, split)
    x, cut = encode(pairs, tokenizer)
    meta = {"tokenizer": tokenizer, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id,
            "tokenizer_kind": tokenizer.kind, "pairs": len(pairs), "cut_to_max_tokens": cut, "texts": pairs}
    return Dataset(name, split, x, meta=meta, kind="pairs")

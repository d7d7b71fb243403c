"""What ``genzoo fill`` and ``genzoo embed`` do (the CLI only wraps these).

RUN is a genzoo bert run or checkpoint folder, a local Hugging Face BERT folder, or a
sentence-transformers folder (embed only, unless it carries a masked-LM head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genzoo.models.sentence_encoder import SentenceEncoder
from genzoo.core.atomic import write_atomic_with
from genzoo.core.errors import GenzooError


def load_bert(path: str | Path, device: str = "cpu"):
    """A genzoo ``BERT`` from a genzoo run/checkpoint or a Hugging Face BERT folder."""
    return SentenceEncoder.from_folder(path, device=device).model


def run_fill(path: str | Path, texts: list[str], *, top_k: int = 5, device: str = "cpu") -> list[dict]:
    if not texts:
        raise GenzooError('give at least one text with [MASK] in it, e.g. genzoo fill RUN "the [MASK] statement"')
    return load_bert(path, device).fill(texts, top_k=top_k)


def run_embed(path: str | Path, texts: list[str], *, out: Path | None = None, normalize: bool | None = None,
              device: str = "cpu") -> np.ndarray:
    """(n, dim) float32 vectors; written to ``out`` (.npy, atomically) when given."""
    if not texts:
        raise GenzooError("give at least one text to embed (arguments or --file)")
    enc = SentenceEncoder.from_folder(path, device=device)
    if normalize is not None:
        enc.normalize = normalize
    vectors = enc.encode(texts)
    if out is not None:
        out = Path(out)
        if out.suffix != ".npy":
            raise GenzooError(f"--out must end in .npy, got {out.name}")
        write_atomic_with(out, lambda tmp: np.save(tmp, vectors))
    return vectors

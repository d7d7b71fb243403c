"""What the store asks of an encoder, and which one ``Store.open`` uses by default.

The store turns records into vectors only through an object it is given: it never chooses or
loads a model. An encoder has a ``space`` (the name its vectors are stored under: vectors from
different models are never compared), a ``dim``, a ``kind`` (the records it embeds: "text",
"image") and ``encode(items) -> (n, dim) float32``.

``Store.open(path)`` (``encoder="default"``) calls the factory registered here.
``genzoo.tasks.encoders`` registers all-MiniLM-L6-v2 when it is imported, and the package declares
the same factory as its ``genzoo.encoders`` entry point, which is found when nothing registered one;
the layer that loads models makes the choice.

``HashingEncoder`` lives here because it needs no model (numpy only): the store's own tests and
benchmarks that must not wait on a model use it. Lexical, not semantic.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from genzoo.core.errors import GenzooError


@runtime_checkable
class Encoder(Protocol):
    space: str
    dim: int
    kind: str

    def encode(self, items: Sequence) -> np.ndarray: ...


_default_factory: Callable[[], Encoder] | None = None


def set_default_encoder(factory: Callable[[], Encoder] | None) -> None:
    """Make ``factory()`` the encoder of ``Store.open(..., encoder="default")`` (None: no default).
    Called with the class, not an instance: a model is loaded only when a store asks for it."""
    global _default_factory
    if factory is not None and not callable(factory):
        raise GenzooError("set_default_encoder takes a callable that returns an encoder, or None")
    _default_factory = factory


ENTRY_POINTS = "genzoo.encoders"  # pyproject.toml: [project.entry-points."genzoo.encoders"] text = "module:factory"


def default_encoder() -> Encoder:
    """The registered factory's encoder; where none was registered in this process, the installed
    package's ``genzoo.encoders`` entry point named ``text`` (plugin discovery: the store names
    no module above it, and ``Store.open(path)`` works for a user who imported only the store)."""
    global _default_factory
    if _default_factory is None:
        from importlib.metadata import entry_points

        found = entry_points(group=ENTRY_POINTS, name="text")
        if found:
            _default_factory = next(iter(found)).load()
    if _default_factory is None:
        raise GenzooError("no default text encoder is registered: import genzoo.tasks (it registers all-MiniLM-L6-v2), "
                          "or open the store with encoder=... (an object with space, dim, kind and encode), "
                          "or encoder=None for keyword search only")
    return _default_factory()


class HashingEncoder:
    kind = "text"

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.space = f"hashing-{dim}"

    def _features(self, text: str):
        text = text.lower()
        words = re.findall(r"\w+", text)
        yield from words
        for w in words:
            padded = f"#{w}#"
            yield from (padded[i : i + 3] for i in range(len(padded) - 2))

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

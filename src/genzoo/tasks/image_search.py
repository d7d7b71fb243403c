"""Text-to-image search over stored digit images, ranked by a contrastive image-text model (CLIP).

``genzoo sample`` records each digits sample as an image generation holding its levels as
``.npy`` (``genzoo.tasks.record.record_sample_images``). The digits features stored then rank
images by image, not by text; to find images *by text*, each image also gets a CLIP image
embedding, stored in the store's ordinary vector table under the space ``clip-digits-<weights
hash>`` (vectors of two CLIPs are never compared), and a query's CLIP text embedding ranks them
by cosine, with the usual filters and visibility (``Store.similar``).

The store makes the missing image vectors at search time (``genzoo.store.images``) with the
encoder this module supplies; ``clip_encoder()`` builds one, importing the model layer only when
called, so importing this module imports no torch.
"""

from __future__ import annotations

import hashlib

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store.images import BATCH, NPY, decode_digit, embed_missing_images  # noqa: F401  (re-exported)
from genzoo.store.records import Hit

SPACE_PREFIX = "clip-digits-"


class ClipImageTextEncoder:
    """A CLIP seen from the store: numpy in, unit-norm float32 numpy out."""

    kind = "image"

    def __init__(self, model):
        self.model = model
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.space = SPACE_PREFIX + digest.hexdigest()[:12]
        self.dim = model.config.embed_dim

    def encode_images(self, images) -> np.ndarray:
        return self.model.encode_images(np.asarray(images)).numpy().astype(np.float32)

    def encode(self, images) -> np.ndarray:  # what the store calls (genzoo.store.encoders.Encoder)
        return self.encode_images(images)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_texts(list(texts)).numpy().astype(np.float32)


def clip_encoder(clip=None, *, progress: bool = False) -> ClipImageTextEncoder:
    """The encoder for a CLIP folder (``genzoo train clip --data captioned-digits --out DIR``), a CLIP, or None: the default CLIP."""
    from genzoo.eval.prompt_agreement import load_clip

    return ClipImageTextEncoder(load_clip(clip, progress=progress))


def search_images(store, query: str, encoder, *, k: int = 10, **filters) -> tuple[list[Hit], dict]:
    """Stored digit images ranked by the CLIP cosine of image and ``query``, best first; plus the
    embedding counts of ``embed_missing_images``. Filters as ``Store.search`` (kind is image)."""
    if not isinstance(query, str) or not query.strip():
        raise GenzooError("an image search needs a text query, e.g. 'a thin seven'")
    if filters.get("kind") not in (None, "image"):
        raise GenzooError("--images searches image generations; drop --kind or pass --kind image")
    counts = embed_missing_images(store, encoder)
    q = encoder.encode_texts([query])[0]
    filters = {key: v for key, v in filters.items() if v is not None and key != "kind"}
    return store.similar(q, space=encoder.space, k=k, kind="image", **filters), counts


SHADES = " .:-=+*#%@"  # levels 0..16 drawn as characters, so results can be seen in a terminal


def ascii_digit(image: np.ndarray) -> str:
    levels = np.clip(np.rint(image.reshape(8, 8)), 0, 16).astype(int)
    return "\n".join("".join(SHADES[v * (len(SHADES) - 1) // 16] * 2 for v in row) for row in levels)


def image_search_table(query: str, *, store_path, k: int = 10, clip=None, **filters):
    """What ``genzoo search QUERY --images`` prints: the best images, drawn, with score and provenance."""
    from datetime import datetime, timezone

    from rich.table import Table
    from rich.text import Text

    from genzoo.store.api import Store

    encoder = clip_encoder(clip, progress=True)
    with Store.open(store_path, encoder=None, embed_on_write=False) as store:
        hits, counts = search_images(store, query, encoder, k=k, **filters)
        url = store.backend.url
    note = f"; embedded {counts['embedded']} image(s) now" if counts["embedded"] else ""
    if counts["waiting"]:
        note += f"; {counts['waiting']} image(s) not searchable yet (a writer's search embeds them)"
    table = Table(title=Text(f"{len(hits)} image(s) for {query!r} (CLIP {encoder.space}{note}) in {url}"))
    for col in ("id", "cosine", "model", "user", "when", "synthetic", "image"):
        table.add_column(col, overflow="fold")
    for h in hits:
        g = h.generation
        image = decode_digit(g.content) if g.content is not None else None
        when = datetime.fromtimestamp(g.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M")
        cells = (str(g.id), f"{h.score:.4f}", g.model_name or g.family or "-", g.owner, when, "yes" if g.synthetic else "no",
                 ascii_digit(image) if image is not None else "-")
        table.add_row(*(Text(c) for c in cells))
    return table


__all__ = ["ClipImageTextEncoder", "ascii_digit", "clip_encoder", "decode_digit", "embed_missing_images", "image_search_table",
           "search_images"]

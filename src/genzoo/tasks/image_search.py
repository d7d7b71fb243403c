"""Text-to-image search over stored digit images, ranked by a contrastive image-text model (CLIP).

``genzoo sample`` records each digits sample as an image generation holding its levels as
``.npy`` (``recording.record_sample_images``). The digits features stored then rank images by
image, not by text; to find images *by text*, each image also gets a CLIP image embedding, stored
in the store's ordinary vector table under the space ``clip-digits-<weights hash>`` (vectors of
two CLIPs are never compared), and a query's CLIP text embedding ranks them by cosine, with the
usual filters and visibility (``Store.similar``).

Embeddings are made at search time for the visible images that lack one in that space: writing
samples stays free of CLIP, and a store filled before CLIP existed becomes searchable on first
use. A caller who may write stores them (one transaction, audited); a reader's search ranks only
images that already have one and says how many lack it.

Like the rest of the store this module imports no torch: the CLIP arrives as an injected encoder
(``encode_images``, ``encode_texts``, ``space``); ``clip_encoder()`` builds one, importing the
model layer only when called.
"""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store.records import Hit

NPY = "application/x-npy"
SPACE_PREFIX = "clip-digits-"
BATCH = 2048  # images decoded and embedded per round: bounded memory on large stores


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

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_texts(list(texts)).numpy().astype(np.float32)


def clip_encoder(clip=None, *, progress: bool = False) -> ClipImageTextEncoder:
    """The encoder for a CLIP folder (``genzoo clip train -o DIR``), a CLIP, or None: the default CLIP."""
    from genzoo.eval.prompt_agreement import load_clip

    return ClipImageTextEncoder(load_clip(clip, progress=progress))


def decode_digit(content) -> np.ndarray | None:
    """(1, 8, 8) levels from a stored .npy, or None when it is not one 8x8 image."""
    try:
        a = np.load(io.BytesIO(bytes(content)), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    if a.size != 64 or not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
        return None
    return a.reshape(1, 8, 8).astype(np.float32)


def _missing(store, space: str) -> list[dict]:
    """Visible .npy images with no vector in ``space``."""
    sql = ("SELECT g.id, g.content FROM generations g WHERE g.kind = 'image' AND g.content_type = ? AND NOT EXISTS "
           "(SELECT 1 FROM embeddings e WHERE e.space = ? AND e.generation_id = g.id)")
    params: list = [NPY, space]
    if store.viewer is not None:
        sql += " AND (g.visibility = 'shared' OR g.owner_id = ?)"
        params.append(store.viewer)
    return store.backend.rows(sql + " ORDER BY g.id", params)


def embed_missing_images(store, encoder) -> dict:
    """Embed (and, for writers, store) the visible digit images lacking a vector in the encoder's space.
    Returns counts: embedded (stored), waiting (a reader cannot store them), skipped (not 8x8 digits)."""
    rows = _missing(store, encoder.space)
    digits = [(r["id"], img) for r in rows if (img := decode_digit(r["content"])) is not None]
    counts = {"embedded": 0, "waiting": 0, "skipped": len(rows) - len(digits)}
    if not digits:
        return counts
    if store.user.role not in ("admin", "writer"):
        counts["waiting"] = len(digits)
        return counts
    for start in range(0, len(digits), BATCH):
        part = digits[start : start + BATCH]
        vecs = encoder.encode_images(np.stack([img for _, img in part]))
        with store.backend.write():
            store.backend.put_embeddings(encoder.space, [(gid, np.asarray(v, np.float32).tobytes()) for (gid, _), v in zip(part, vecs)])
            store.backend.audit(store.user.id, "embed", "generations", None, {"space": encoder.space, "count": len(part)}, time.time())
        counts["embedded"] += len(part)
    return counts


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

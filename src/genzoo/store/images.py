"""Vectors for stored digit images that lack one in an encoder's space (e.g. a CLIP's).

``genzoo sample`` records each digits sample as an image generation holding its levels as
``.npy``. An image encoder (an object with ``space``, ``dim`` and ``encode(images)``; the
CLIP's comes from ``genzoo.tasks.image_search``) embeds the visible ones that lack a vector in
its space, at search time: writing samples stays free of the model, and a store filled before
the model existed becomes searchable on first use. A caller who may write stores the vectors
(one transaction per batch, audited); a reader's search ranks only images that already have one.
"""

from __future__ import annotations

import io
import time

import numpy as np

NPY = "application/x-npy"
BATCH = 2048  # images decoded and embedded per round: bounded memory on large stores


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


def embed_missing_images(store, encoder, batch: int = BATCH) -> dict:
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
    for start in range(0, len(digits), batch):
        part = digits[start : start + batch]
        vecs = encoder.encode(np.stack([img for _, img in part]))
        with store.backend.write():
            store.backend.put_embeddings(encoder.space, [(gid, np.asarray(v, np.float32).tobytes()) for (gid, _), v in zip(part, vecs)])
            store.backend.audit(store.user.id, "embed", "generations", None, {"space": encoder.space, "count": len(part)}, time.time())
        counts["embedded"] += len(part)
    return counts

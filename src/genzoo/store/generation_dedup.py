"""Duplicates among stored generations: ``Store.duplicates`` and ``genzoo dedup --store``.

Read-only: it reports clusters, it deletes and flags nothing. Only generations the caller may
see take part (an admin sees all; another user their own and shared ones), so a report never
names, nor is shaped by, another user's private record. Older records are kept: the lowest id
of a cluster is its kept one, later ids are its duplicates.

- text: exact duplicates share the normalized hash (NFKC, case and whitespace folded); near
  duplicates have Jaccard >= ``threshold`` of their word 5-shingles, found by MinHash LSH and
  verified exactly (``genzoo.store.dedup.dedup_texts``).
- image: exact duplicates share the content sha256 (the same bytes); near duplicates have a
  cosine >= ``threshold`` between their stored vectors in ``space`` (by default the digits
  evaluator's features, which ``genzoo sample`` stores for each digits image). Images without a
  vector in that space take part in the exact pass only.
"""

from __future__ import annotations

import time

import numpy as np

from genzoo.core.errors import GenzooError
from genzoo.store import search as S
from genzoo.store.dedup import DEFAULT_TEXT_THRESHOLD, Duplicate, _exact_pass, check_threshold, dedup_texts, dedup_vectors

KINDS = ("text", "image")
IMAGE_SPACE = "digits-cnn-64"  # DigitsImageEncoder.space (not imported: it would pull in torch)
# Cosine of digits-evaluator features, measured on the 1797 distinct digits (benchmarks/store_dedup.py,
# benchmarks/README.md section 20): 0.99 flags 572 of them, 0.995 151, 0.998 9 (pairs whose raw pixels
# have cosine >= 0.967: drawn almost alike), 0.999 none. The features are made to tell classes apart,
# so same-class digits sit close: only 0.998 and above mean "nearly the same image".
DEFAULT_IMAGE_THRESHOLD = 0.998
ALL = 10**12  # "no limit" for the backends' newest-first listing


def find_duplicates(store, kind: str = "text", *, threshold: float | None = None, space: str = IMAGE_SPACE, **filters) -> dict:
    """A JSON-able report: counts and ``clusters`` ([{"kept": id, "duplicates": [{"id", "how", "similarity"}]}])."""
    if kind not in KINDS:
        raise GenzooError(f"dedup of stored generations compares kind text or image, got {kind!r}")
    if "kind" in filters:
        raise GenzooError("give the kind as kind=... (text or image), not as a filter")
    S.check_space(space)
    f = S.Filters.make(kind=kind, **filters)
    start = time.perf_counter()
    ids = sorted(store.backend.latest(f, store.viewer, ALL))  # visibility and filters decided by the backend
    if kind == "text":
        threshold = check_threshold(DEFAULT_TEXT_THRESHOLD if threshold is None else threshold, "Jaccard")
        ids, dup = _text_duplicates(store, ids, threshold)
        measure = "Jaccard of word 5-shingles (MinHash LSH, verified)"
    else:
        threshold = check_threshold(DEFAULT_IMAGE_THRESHOLD if threshold is None else threshold, "cosine")
        dup = _image_duplicates(store, ids, threshold, space)
        measure = f"cosine of vectors in space {space!r}"
    return _report(kind, ids, dup, threshold, measure, time.perf_counter() - start)


def _text_duplicates(store, ids: list[int], threshold: float) -> tuple[list[int], dict[int, Duplicate]]:
    gens = store.backend.get_generations(ids)
    texts = {}
    for gid in ids:
        text = store._decrypted(gens[gid]).text if gid in gens else None
        if isinstance(text, str):
            texts[gid] = text
    ids = [gid for gid in ids if gid in texts]
    result = dedup_texts([texts[gid] for gid in ids], threshold=threshold)
    return ids, {ids[i]: Duplicate(ids[d.of], d.how, d.similarity) for i, d in result.duplicate_of.items()}


def _image_duplicates(store, ids: list[int], threshold: float, space: str) -> dict[int, Duplicate]:
    shas = _column(store, "SELECT id, content_sha256 FROM generations WHERE id IN ({})", ids)
    dup = {ids[i]: Duplicate(ids[d.of], d.how, d.similarity)
           for i, d in _exact_pass([shas.get(gid) or f"none:{gid}" for gid in ids]).items()}
    vectors = _column(store, "SELECT generation_id, vector FROM embeddings WHERE space = ? AND generation_id IN ({})",
                      [gid for gid in ids if gid not in dup], first=[space])
    have = [gid for gid in ids if gid in vectors]
    if len(have) > 1:
        x = np.stack([_as_vector(vectors[gid]) for gid in have])
        result = dedup_vectors(x, threshold=threshold)
        for i, d in result.duplicate_of.items():
            # identical vectors of different bytes are near duplicates: "exact" means the same content
            dup[have[i]] = Duplicate(have[d.of], "near", min(d.similarity, 1.0))
    return dup


def _column(store, sql: str, ids: list[int], first=(), chunk: int = 500) -> dict[int, object]:
    """{id: value} for ``sql``'s two columns over ``ids``, in chunks (SQLite caps bound parameters)."""
    out: dict[int, object] = {}
    for lo in range(0, len(ids), chunk):
        part = ids[lo:lo + chunk]
        for row in store.backend.rows(sql.format(", ".join("?" * len(part))), [*first, *part]):
            key, value = list(row.values())
            out[int(key)] = value
    return out


def _as_vector(value) -> np.ndarray:
    """A stored vector: float32 bytes (SQLite) or pgvector's text form '[0.1,0.2,...]' (PostgreSQL)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(value), np.float32)
    if isinstance(value, str):
        return np.asarray([float(v) for v in value.strip("[]").split(",")], np.float32)
    return np.asarray(value, np.float32)  # a driver with pgvector's adapter hands back an array


def _report(kind, ids, dup, threshold, measure, seconds) -> dict:
    groups: dict[int, list[dict]] = {}
    for gid in sorted(dup):
        d = dup[gid]
        groups.setdefault(d.of, []).append({"id": gid, "how": d.how, "similarity": round(float(d.similarity), 4)})
    return {
        "kind": kind, "generations": len(ids), "kept": len(ids) - len(dup),
        "exact_duplicates": sum(d.how == "exact" for d in dup.values()),
        "near_duplicates": sum(d.how == "near" for d in dup.values()),
        "clusters": [{"kept": k, "duplicates": v} for k, v in sorted(groups.items())],
        "threshold": float(threshold), "similarity": measure, "seconds": round(seconds, 3),
    }

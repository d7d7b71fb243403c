"""Exact vector search: normalised float32 matrices per embedding space, scanned with numpy.

Chosen by measurement (DESIGN.md, 100,000 x 384 on 2 cores): a numpy scan answers k=10 in about
8 ms with recall 1.0, sqlite-vec's scan in about 54 ms, and HNSW libraries in 1-2 ms but with a
recall that depends on the data. At this store's sizes exact search fits the 20 ms goal, never
misses, and cannot be corrupted by a kill (it is rebuilt from the embeddings table).

Beside the vectors the index keeps the immutable metadata of each generation (owner, visibility,
model, family, kind, time, synthetic), so filters are applied *before* ranking (post-filtering a
top-k list loses results under selective filters). Generations are append-only and ids grow in
commit order, so ``sync`` only ever appends rows with larger ids.

Rows are kept in segments, one contiguous matrix per (kind, family, shared, synthetic). A scan is
bound by memory bandwidth (100,000 x 384 float32 is 147 MB per query), and the broad filters
(a family, a reader's visibility, real or synthetic) select whole segments, so they read only
the bytes of the rows they keep: a family that holds a quarter of the rows costs a quarter of
the scan, where one matrix in id order had to gather (copy) the rows or scan them all
(benchmarks/README.md, section 19). A time range is a slice of a segment (rows arrive in time
order: found by binary search, checked, not assumed). Narrower conditions (owner, model, rating)
are masks inside what remains.
"""

from __future__ import annotations

import numpy as np


class _Codes:
    """Small integer codes for strings, so that string filters are integer comparisons."""

    def __init__(self):
        self.codes: dict[str | None, int] = {}

    def code(self, value) -> int:
        return self.codes.setdefault(value, len(self.codes))

    def get(self, value) -> int:
        return self.codes.get(value, -1)


class _Segment:
    """Rows that share kind, family, visibility and the synthetic flag, in id order."""

    COLUMNS = {"ids": np.int64, "owner_id": np.int64, "model_id": np.int64, "created_at": np.float64}

    def __init__(self, dim: int):
        self.n = 0
        self.vectors = np.zeros((0, dim), np.float32)
        self.cols = {name: np.zeros(0, dtype) for name, dtype in self.COLUMNS.items()}
        self.time_sorted = True  # created_at never decreases along the rows (a clock set back breaks it)

    def append(self, vectors: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        m = len(vectors)
        if self.n + m > len(self.vectors):
            cap = max(self.n + m, 2 * len(self.vectors), 256)  # doubling: appends cost O(1) amortised
            grown = np.zeros((cap, self.vectors.shape[1]), np.float32)
            grown[: self.n] = self.vectors[: self.n]
            self.vectors = grown
            self.cols = {k: np.resize(a, cap) for k, a in self.cols.items()}
        s = slice(self.n, self.n + m)
        times = np.asarray(cols["created_at"], np.float64)
        if self.n and len(times) and times[0] < self.cols["created_at"][self.n - 1] or np.any(np.diff(times) < 0):
            self.time_sorted = False
        self.vectors[s] = vectors
        for k, a in cols.items():
            self.cols[k][s] = a
        self.n += m

    def col(self, name: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        return self.cols[name][lo: self.n if hi is None else hi]

    def time_range(self, since, until) -> tuple[int, int]:
        """Rows lo:hi hold every row with since <= created_at <= until (all rows if not time-sorted)."""
        if not self.time_sorted:
            return 0, self.n
        t = self.col("created_at")
        lo = 0 if since is None else int(np.searchsorted(t, since, side="left"))
        hi = self.n if until is None else int(np.searchsorted(t, until, side="right"))
        return lo, max(lo, hi)


class VectorIndex:
    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.n = 0
        self.last_id = 0  # generation ids up to here have been seen (embedded or not)
        self.segments: dict[tuple[int, int, bool, bool], _Segment] = {}  # (kind, family, shared, synthetic) -> rows
        self.families, self.kinds = _Codes(), _Codes()

    def add(self, ids, vectors, meta: list[dict]) -> None:
        """Append rows (ids ascending); vectors are L2-normalised here."""
        vectors = np.asarray(vectors, np.float32)
        if len(ids) == 0:
            return
        if vectors.ndim != 2:
            raise ValueError("vectors must be a 2-D array")
        if self.dim is None:
            self.dim = vectors.shape[1]
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of dimension {vectors.shape[1]} for an index of dimension {self.dim}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        keys = [(self.kinds.code(r["kind"]), self.families.code(r["family"]), r["visibility"] == "shared", bool(r["synthetic"]))
                for r in meta]
        cols = {"ids": np.asarray(ids, np.int64),
                "owner_id": np.asarray([r["owner_id"] for r in meta], np.int64),
                "model_id": np.asarray([-1 if r["model_id"] is None else r["model_id"] for r in meta], np.int64),
                "created_at": np.asarray([r["created_at"] for r in meta], np.float64)}
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        for key, members in groups.items():  # each segment gets its rows in id order
            rows = np.asarray(members) if len(groups) > 1 else slice(None)
            seg = self.segments.get(key)
            if seg is None:
                seg = self.segments[key] = _Segment(self.dim)
            seg.append(vectors[rows], {k: a[rows] for k, a in cols.items()})
        self.n += len(ids)

    def mask(self, *, viewer: int | None, model_ids=None, family=None, owner_id=None, kind=None, since=None,
             until=None, synthetic=None, allowed_ids=None) -> dict | None:
        """The rows that pass every given filter, for ``search``: None (every row), or for each
        segment with rows that pass, (lo, hi, keep): its rows lo:hi, and None (all of them) or a
        boolean mask over those. ``viewer`` None = sees all."""
        if viewer is None and all(v is None for v in (model_ids, family, owner_id, kind, since, until, synthetic, allowed_ids)):
            return None
        want_kind = None if kind is None else self.kinds.get(kind)
        want_family = None if family is None else self.families.get(family)
        models = None if model_ids is None else np.asarray(list(model_ids), np.int64)
        allowed = None if allowed_ids is None else np.unique(np.asarray(list(allowed_ids), np.int64))  # sorted, for _members
        selection: dict = {}
        for key, seg in self.segments.items():
            seg_kind, seg_family, shared, seg_synthetic = key
            if (want_kind is not None and seg_kind != want_kind) or (want_family is not None and seg_family != want_family) \
                    or (synthetic is not None and seg_synthetic != bool(synthetic)):
                continue
            lo, hi = seg.time_range(since, until)
            if lo == hi:
                continue
            keep = None
            for condition in (
                None if viewer is None or shared else lambda: seg.col("owner_id", lo, hi) == viewer,
                None if models is None else lambda: np.isin(seg.col("model_id", lo, hi), models),
                None if owner_id is None else lambda: seg.col("owner_id", lo, hi) == owner_id,
                None if since is None or seg.time_sorted else lambda: seg.col("created_at", lo, hi) >= since,
                None if until is None or seg.time_sorted else lambda: seg.col("created_at", lo, hi) <= until,
                None if allowed is None else lambda: _members(seg.col("ids", lo, hi), allowed),
            ):
                if condition is not None:
                    keep = condition() if keep is None else keep & condition()
            if keep is None or keep.any():
                selection[key] = (lo, hi, keep)
        return selection

    def search(self, query, k: int, keep: dict | None = None) -> list[tuple[int, float]]:
        """(generation id, cosine similarity) of the k nearest rows that ``keep`` (from ``mask``)
        allows, best first (ties by id)."""
        if self.n == 0:
            return []
        q = np.asarray(query, np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"a query vector of dimension {q.shape[0]} for an index of dimension {self.dim}")
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        found_ids, found_scores = [], []
        for key, (lo, hi, rows_kept) in (((key, (0, None, None)) for key in self.segments) if keep is None else keep.items()):
            seg = self.segments[key]
            hi = seg.n if hi is None else hi
            vectors, ids = seg.vectors[lo:hi], seg.col("ids", lo, hi)  # views: no copy
            if rows_kept is None:
                scores = vectors @ q
            else:
                rows = np.flatnonzero(rows_kept)
                # few rows: copy them out and score those; many: score the slice and pick
                scores = vectors[rows] @ q if len(rows) < (hi - lo) // 2 else (vectors @ q)[rows]
                ids = ids[rows]
            if len(scores) > k:
                top = np.argpartition(-scores, k - 1)[:k]
                scores, ids = scores[top], ids[top]
            found_ids.append(ids)
            found_scores.append(scores)
        if not found_ids:
            return []
        ids, scores = np.concatenate(found_ids), np.concatenate(found_scores)
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[i]), float(scores[i])) for i in order]


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set, by binary search: the set is sorted once per query, not once per
    segment as np.isin would."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values

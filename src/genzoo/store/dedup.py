"""Exact and near-duplicate detection for texts (MinHash LSH) and vectors (cosine similarity).

>>> r = dedup_texts(["Hello  World", "hello world", "something else entirely"])
>>> r.keep, r.clusters
([0, 2], [[0, 1]])
>>> r.duplicate_of[1]
Duplicate(of=0, how='exact', similarity=1.0)

Both passes keep the *first* item of a group and drop the later ones, so the
order of the input is the order of preference (put training data before
validation data, older records before newer ones):

1. exact: items whose normalized form is identical. Text is normalized with
   Unicode NFKC (full-width letters, ligatures and non-breaking spaces become
   their plain forms), case folding and whitespace folding (every run of
   whitespace becomes one space, ends trimmed); vectors compare their raw
   bytes.
2. near: among the survivors, greedily in input order, an item is kept and
   every later item within ``threshold`` of it is dropped. Hence every dropped
   item is within the threshold of the item it is clustered with (no chains
   of "similar to something similar"), and two kept items are never within it
   of each other (up to LSH misses, measured in benchmarks/README.md §20).

Text similarity is the Jaccard index of shingle sets: ``unit="word"`` takes
runs of ``k`` whitespace-separated tokens of the normalized text (default
k=5, as in most web-scale dedup work), ``unit="char"`` runs of ``k``
characters. Shingles are hashed to 32 bits with CRC-32 (stable across
processes, unlike ``hash()``), signed with ``datasketch.MinHash``
(``num_perm`` permutations) and bucketed by ``datasketch.MinHashLSH``, which
picks its bands and rows for ``threshold``. LSH candidates are then checked
against the *exact* Jaccard of the hashed shingle sets (``verify="exact"``,
the default: no false merges beyond 32-bit hash collisions) or against the
MinHash estimate (``verify="minhash"``: less memory, about 1/sqrt(num_perm)
error). A text shorter than ``k`` units is one shingle: only exact matches.

Vector similarity is the cosine of the angle between rows (zero rows match
nothing but exact copies); compared block by block with numpy, O(n^2) time
and O(block * n) memory.

``NearDuplicateIndex`` is the incremental form for the store: add texts one
at a time and ask whether a new one nearly duplicates any already there.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass, field

import numpy as np

from genzoo.core.errors import GenzooError

UNITS = ("word", "char")
DEFAULT_TEXT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
# MinHashLSH picks bands x rows to minimise weight_fp * (false-positive area) + weight_fn * (false-negative
# area). Every candidate is verified afterwards, so a false positive costs one comparison while a false negative
# is a missed duplicate: weighting misses 9:1 lifts the chance that a pair *at* the threshold becomes a candidate
# from 0.40 to 0.87 (threshold 0.8, 128 permutations: 14 bands of 9 rows instead of 9 of 13).
LSH_WEIGHTS = (0.1, 0.9)
SCHEME = "affine32"  # datasketch's permutation scheme for 32-bit input hashes; persisted signatures depend on it
_WHITESPACE = re.compile(r"\s+")


# --- normalization and exact keys ------------------------------------------------------------------------------

def normalize_text(text: str) -> str:
    """NFKC, case-folded, every whitespace run one space, trimmed: what exact dedup compares."""
    if not isinstance(text, str):
        raise GenzooError(f"dedup compares text, got {type(text).__name__}")
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def exact_key(text: str) -> str:
    """SHA-256 (hex) of the normalized text: equal keys mean exact duplicates."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def vector_key(vector) -> str:
    """SHA-256 (hex) of a vector's dtype, shape and bytes: equal keys mean identical vectors (or images)."""
    a = np.ascontiguousarray(vector)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


# --- shingles and similarity -----------------------------------------------------------------------------------

def shingles(text: str, *, unit: str = "word", k: int = 5) -> np.ndarray:
    """The sorted, unique 32-bit hashes of the text's ``k``-shingles (of words or characters)."""
    if unit not in UNITS:
        raise GenzooError(f"unknown shingle unit {unit!r}; choose one of: {', '.join(UNITS)}")
    if k < 1:
        raise GenzooError(f"shingle size k must be at least 1, got {k}")
    norm = normalize_text(text)
    if unit == "word":
        tokens = norm.split(" ") if norm else []
        grams = [" ".join(tokens[i:i + k]) for i in range(max(1, len(tokens) - k + 1))] if tokens else [""]
    else:
        grams = [norm[i:i + k] for i in range(max(1, len(norm) - k + 1))]
    return np.unique(np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard index of two sorted unique arrays (as ``shingles`` returns)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


# --- results ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Duplicate:
    """Why an item was dropped: the kept item ``of`` it duplicates, ``how`` (exact or near) and the similarity."""

    of: int
    how: str
    similarity: float


@dataclass
class DedupResult:
    """``keep``: indices to keep, in input order; ``clusters``: each ``[kept, dropped...]`` (only groups of 2+);
    ``duplicate_of``: for every dropped index, which kept index it duplicates and how."""

    n: int
    keep: list[int]
    clusters: list[list[int]]
    duplicate_of: dict[int, Duplicate] = field(default_factory=dict)

    @property
    def dropped(self) -> list[int]:
        return sorted(self.duplicate_of)

    @property
    def exact_duplicates(self) -> int:
        return sum(d.how == "exact" for d in self.duplicate_of.values())

    @property
    def near_duplicates(self) -> int:
        return sum(d.how == "near" for d in self.duplicate_of.values())


def _result(n: int, duplicate_of: dict[int, Duplicate]) -> DedupResult:
    groups: dict[int, list[int]] = {}
    for i in sorted(duplicate_of):
        groups.setdefault(duplicate_of[i].of, []).append(i)
    clusters = [[k] + members for k, members in sorted(groups.items())]
    keep = [i for i in range(n) if i not in duplicate_of]
    return DedupResult(n, keep, clusters, dict(sorted(duplicate_of.items())))


def _exact_pass(keys: list[str]) -> dict[int, Duplicate]:
    first: dict[str, int] = {}
    dup: dict[int, Duplicate] = {}
    for i, key in enumerate(keys):
        if key in first:
            dup[i] = Duplicate(first[key], "exact", 1.0)
        else:
            first[key] = i
    return dup


def check_threshold(threshold: float, what: str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, str, np.number)):
        raise GenzooError(f"{what} threshold must be a number in (0, 1], got {type(threshold).__name__}")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError, OverflowError):
        raise GenzooError(f"{what} threshold must be a number in (0, 1], got {threshold!r}") from None
    if not 0.0 < threshold <= 1.0:
        raise GenzooError(f"{what} threshold must lie in (0, 1], got {threshold}")
    return threshold


# --- texts -----------------------------------------------------------------------------------------------------

class _Signer:
    """MinHash signatures with one shared set of permutations (building them per text would dominate the time)."""

    def __init__(self, num_perm: int, seed: int):
        from datasketch import MinHash

        if num_perm < 16:
            raise GenzooError(f"num_perm must be at least 16 for a usable estimate, got {num_perm}")
        self._minhash = MinHash
        self.num_perm, self.seed = num_perm, seed
        self._template = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)

    def sign(self, hashed_shingles: np.ndarray):
        m = self._minhash(num_perm=self.num_perm, seed=self.seed, hashfunc=int,
                          permutations=self._template.permutations, scheme=SCHEME)
        m.update_batch(hashed_shingles.tolist())  # already 32-bit hashes: hashfunc=int passes them through
        return m


def dedup_texts(texts, *, threshold: float = DEFAULT_TEXT_THRESHOLD, unit: str = "word", k: int = 5,
                num_perm: int = DEFAULT_NUM_PERM, seed: int = 1, near: bool = True,
                verify: str = "exact") -> DedupResult:
    """Exact, then near-duplicate (Jaccard >= ``threshold`` of ``k``-shingles) detection over ``texts``."""
    texts = list(texts)
    threshold = check_threshold(threshold, "Jaccard")
    if verify not in ("exact", "minhash"):
        raise GenzooError(f"verify must be 'exact' or 'minhash', got {verify!r}")
    dup = _exact_pass([exact_key(t) for t in texts])
    if near:
        survivors = [i for i in range(len(texts)) if i not in dup]
        sets = {i: shingles(texts[i], unit=unit, k=k) for i in survivors}
        dup.update(_near_texts(survivors, sets, threshold, num_perm, seed, verify))
    return _result(len(texts), dup)


@functools.lru_cache(maxsize=64)
def _lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """MinHashLSH's (bands, rows) for ``threshold``: chosen once (datasketch integrates the false
    positive and negative rates numerically, ~40 ms, on every construction otherwise)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


def _near_texts(order: list[int], sets: dict[int, np.ndarray], threshold: float, num_perm: int, seed: int,
                verify: str) -> dict[int, Duplicate]:
    from datasketch import MinHashLSH

    if len(order) < 2:  # nothing to compare (and the LSH's band choice alone costs ~40 ms)
        return {}
    signer = _Signer(num_perm, seed)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=_lsh_bands(threshold, num_perm))
    sigs = {}
    for i in order:
        sigs[i] = signer.sign(sets[i])
        lsh.insert(i, sigs[i])
    rank = {i: r for r, i in enumerate(order)}
    dup: dict[int, Duplicate] = {}
    for i in order:
        if i in dup:
            continue
        for j in sorted(lsh.query(sigs[i]), key=rank.__getitem__):
            if rank[j] <= rank[i] or j in dup:
                continue
            sim = jaccard(sets[i], sets[j]) if verify == "exact" else sigs[i].jaccard(sigs[j])
            if sim >= threshold:
                dup[j] = Duplicate(i, "near", float(sim))
    return dup


class NearDuplicateIndex:
    """Incremental near-duplicate lookup (for stored generations): ``add`` texts, ``query`` a new one.

    Exact duplicates (equal ``exact_key``) are answered from a dictionary, near ones through MinHash LSH with
    the MinHash estimate as the check (the shingle sets are not kept, so memory is ``num_perm`` values per
    text); ``signature`` gives the values to persist and ``add(..., signature=...)`` reloads them."""

    def __init__(self, *, threshold: float = DEFAULT_TEXT_THRESHOLD, unit: str = "word", k: int = 5,
                 num_perm: int = DEFAULT_NUM_PERM, seed: int = 1):
        from datasketch import MinHashLSH

        self.threshold = check_threshold(threshold, "Jaccard")
        shingles("", unit=unit, k=k)  # validates unit and k
        self.unit, self.k = unit, k
        self._signer = _Signer(num_perm, seed)
        self._lsh = MinHashLSH(threshold=self.threshold, num_perm=num_perm, params=_lsh_bands(self.threshold, num_perm))
        self._exact: dict[str, object] = {}
        self._sigs: dict[object, object] = {}

    def __len__(self) -> int:
        return len(self._sigs)

    def signature(self, text: str) -> np.ndarray:
        return self._sign(text).hashvalues.copy()

    def _sign(self, text: str):
        return self._signer.sign(shingles(text, unit=self.unit, k=self.k))

    def add(self, key, text: str, *, signature: np.ndarray | None = None) -> None:
        if key in self._sigs:
            raise GenzooError(f"key {key!r} is already in the dedup index")
        if signature is not None:
            from datasketch import MinHash

            sig = MinHash(num_perm=self._signer.num_perm, seed=self._signer.seed, hashvalues=signature,
                          permutations=self._signer._template.permutations, scheme=SCHEME)
        else:
            sig = self._sign(text)
        self._exact.setdefault(exact_key(text), key)
        self._sigs[key] = sig
        self._lsh.insert(key, sig)

    def query(self, text: str) -> list[tuple[object, str, float]]:
        """``(key, "exact" | "near", similarity)`` for every indexed text that ``text`` duplicates, best first."""
        found = []
        exact = self._exact.get(exact_key(text))
        if exact is not None:
            found.append((exact, "exact", 1.0))
        sig = self._sign(text)
        for key in self._lsh.query(sig):
            if key == exact:
                continue
            sim = float(sig.jaccard(self._sigs[key]))
            if sim >= self.threshold:
                found.append((key, "near", sim))
        return sorted(found, key=lambda f: (-f[2], str(f[0])))


# --- vectors and images ----------------------------------------------------------------------------------------

def dedup_vectors(vectors, *, threshold: float = 0.99, near: bool = True, block: int = 1024) -> DedupResult:
    """Exact (identical bytes), then near (cosine similarity >= ``threshold``) duplicates among rows.

    Images go in flattened (one row per image); embeddings go in as they are."""
    x = np.asarray(vectors)
    if x.ndim < 2 or x.dtype.kind not in "iuf":
        raise GenzooError(f"dedup_vectors takes a numeric array with one row per item, got {x.dtype} {x.shape}")
    threshold = check_threshold(threshold, "cosine")
    x = x.reshape(len(x), -1)
    dup = _exact_pass([vector_key(row) for row in x])
    if near and len(x) > 1:
        dup.update(_near_vectors(x, [i for i in range(len(x)) if i not in dup], threshold, block))
    return _result(len(x), dup)


def _near_vectors(x: np.ndarray, order: list[int], threshold: float, block: int) -> dict[int, Duplicate]:
    v = x[order].astype(np.float64)
    if not np.isfinite(v).all():
        raise GenzooError("vectors hold NaN or infinite values; clean them before dedup")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)  # zero rows: similarity 0 to everything
    neighbours: list[list[tuple[int, float]]] = [[] for _ in order]
    for lo in range(0, len(order), block):
        sims = v[lo:lo + block] @ v.T
        for r, row in enumerate(sims, start=lo):
            later = np.nonzero(row[r + 1:] >= threshold)[0] + r + 1  # only later items can be dropped for r
            neighbours[r] = [(int(j), float(row[j])) for j in later]
    dup: dict[int, Duplicate] = {}
    dropped = set()
    for r in range(len(order)):
        if r in dropped:
            continue
        for j, sim in neighbours[r]:
            if j not in dropped:
                dropped.add(j)
                dup[order[j]] = Duplicate(order[r], "near", min(sim, 1.0))
    return dup

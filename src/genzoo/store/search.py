"""Search pieces shared by every backend: safe keyword queries, checked filters, rank fusion.

Keyword queries never reach the full-text engine as syntax. The user's text is cut into word
tokens and each token is sent as a quoted string, joined by OR: quotes, ``*``, ``NEAR(``, ``AND``,
column filters and SQL fragments become plain words (or vanish), so no input raises an FTS5
syntax error and nothing is ever interpolated into SQL (values travel as parameters).

Fusion: reciprocal rank fusion, score = sum over lists of 1 / (k + rank), k = 60 (Cormack et
al. 2009; the constant LanceDB and Chroma use); or a weighted sum of min-max normalised scores
(relative-score fusion, Weaviate's default), ``alpha`` on the vector side.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone

from genzoo.core.errors import GenzooError
from genzoo.store.records import KINDS

MODES = ("hybrid", "keyword", "vector")
FUSIONS = ("rrf", "weighted")
RRF_K = 60
MAX_QUERY_CHARS = 10_000  # longer input is refused: no one types it, and it only costs time
MAX_TERMS = 32  # BM25 over more OR-ed terms costs time and adds nothing to ranking
MAX_K = 1000
_WORD = re.compile(r"\w+", re.UNICODE)
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_ID = 2**63 - 1  # the largest row id either database stores
MAX_EPOCH = 1e12  # seconds: about the year 33,658; anything larger is not a time


def _finite(x) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


def check_text(value: str, what: str) -> str:
    """``value`` if it is valid Unicode text. A lone surrogate (what Python makes of bytes that are
    not UTF-8 in a command-line argument or an environment variable) cannot be encoded, stored,
    tokenised or compared, so it is refused here with one clear message instead of failing deep
    inside the database driver or the tokenizer (and differently in each search mode)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise GenzooError(f"{what} is not valid UTF-8 text (character {e.start + 1} is a lone surrogate, e.g. from invalid "
                          "UTF-8 bytes on the command line); give it as UTF-8") from None
    return value


def check_query(query) -> str:
    if isinstance(query, (bytes, bytearray, memoryview)):
        raise GenzooError("a search query must be text, not bytes; decode it first (e.g. query.decode('utf-8'))")
    if not isinstance(query, str):
        raise GenzooError(f"a search query must be a string, got {type(query).__name__}")
    if len(query) > MAX_QUERY_CHARS:
        raise GenzooError(f"the search query has {len(query):,} characters; at most {MAX_QUERY_CHARS:,} are accepted: shorten it")
    # A lone surrogate cannot reach the database driver or a tokenizer: it becomes U+FFFD (no word),
    # the same in every mode. The CLI refuses such a query outright (check_text), with one clear line.
    return _SURROGATE.sub("\ufffd", query).replace("\x00", " ")


def query_terms(query: str) -> list[str]:
    """The query's distinct word tokens (at most MAX_TERMS), lower-cased; never FTS syntax."""
    words = _WORD.findall(check_query(query).lower())
    return list(dict.fromkeys(w for w in words if w.strip("_")))[:MAX_TERMS]


def fts_any(terms: list[str]) -> str:
    """FTS5 for "any of these words": each a quoted string (\\w+ tokens hold no quote)."""
    return " OR ".join(f'"{t}"' for t in terms)


def rare_terms(terms: list[str], counts: dict[str, int], common_above: float) -> list[str]:
    """The terms in at most ``common_above`` records (by ``counts``); when every term is more
    common than that, the rarest one alone. Used by both backends' common-term cutoff."""
    rare = [t for t in terms if counts.get(t, 0) <= common_above]
    return rare or ([min(terms, key=lambda t: counts[t])] if terms else [])


def fts_match(terms: list[str], anchor: list[str]) -> str:
    """FTS5 for "any of ``anchor``, scored by all of ``terms``" (anchor == terms: plain OR)."""
    if list(anchor) == list(terms):
        return fts_any(terms)
    return f"({fts_any(anchor)}) AND ({fts_any(terms)})"


def fts_with_cutoff(terms: list[str], counts: dict[str, int], common_above: float) -> str:
    """FTS5 for "any of these words" that matches few records even when some words are common.

    BM25 costs time per *matching* record, and one common word matches a large share of a big
    store (measured at 100,000 pydocs records: 3-6 word OR queries matched 3k-45k rows and took
    75 ms in bm25 alone). As Elasticsearch's ``cutoff_frequency`` did, rare terms (in at most
    ``common_above`` records, by ``counts``) decide which records match and every term scores
    them: ``(rare OR ...) AND (every term OR ...)``. When every term is common, the rarest one
    anchors the match; records that hold all the terms still rank first, as BM25 scores them all."""
    return fts_match(terms, rare_terms(terms, counts, common_above))


def check_k(k) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise GenzooError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
    return k


def check_space(space) -> str:
    """An embedding space's name: a short printable string (it is a SQL parameter and a dict key)."""
    if not isinstance(space, str) or not space or len(space) > 200 or not space.isprintable() or not _utf8(space):
        raise GenzooError(f"space must name an embedding space (printable, at most 200 characters), e.g. 'digits-cnn-64'; got {space!r:.80}")
    return space


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a lone surrogate
        return False


def parse_time(value, what: str) -> float | None:
    """UTC seconds from a datetime, epoch seconds, or an ISO 8601 date/time (naive = UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise GenzooError(f"{what} must be a date/time, got {value!r}")
    if isinstance(value, (int, float)):
        if not _finite(value) or abs(value) > MAX_EPOCH:
            raise GenzooError(f"{what} must be a finite time, got {value!r}")
        return float(value)
    if isinstance(value, str):
        check_text(value, what)
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise GenzooError(f"{what} {value!r} is not a date; use ISO 8601 such as 2025-01-31 or 2025-01-31T12:00:00Z") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    raise GenzooError(f"{what} must be a date/time (ISO 8601 text, datetime or epoch seconds), got {type(value).__name__}")


@dataclass(frozen=True)
class Filters:
    """Metadata filters; None means "any". ``model``: a model name or id; ``user``: a user name."""

    model: str | int | None = None
    family: str | None = None
    user: str | None = None
    kind: str | None = None
    since: float | None = None
    until: float | None = None
    min_rating: float | None = None
    synthetic: bool | None = None

    @classmethod
    def make(cls, **given) -> "Filters":
        known = {f.name for f in fields(cls)}
        bad = set(given) - known
        if bad:
            raise GenzooError(f"unknown search filter(s) {sorted(bad)}; filters: {', '.join(sorted(known))}")
        for name in ("family", "user"):
            v = given.get(name)
            if v is not None and (not isinstance(v, str) or not v.strip() or len(v) > 200):
                raise GenzooError(f"filter {name} must be a non-empty name, got {v!r}")
        model = given.get("model")
        if model is not None:
            if isinstance(model, bool) or not isinstance(model, (str, int)) or (isinstance(model, str) and not (model.strip() and len(model) <= 500)):
                raise GenzooError(f"filter model must be a model name or id, got {model!r}")
            # ids start at 1; -1 or 0 would match nothing in SQL but "no model" in a vector index (-1 marks it there)
            if isinstance(model, int) and not 1 <= model <= MAX_ID:
                raise GenzooError(f"filter model: a model id is a whole number from 1 up, got {model!r}")
        for name in ("model", "family", "user"):
            v = given.get(name)
            if isinstance(v, str):
                check_text(v, f"filter {name}")
                if "\x00" in v:
                    raise GenzooError(f"filter {name} must not hold a NUL character, got {v!r}")
        kind = given.get("kind")
        if kind is not None and kind not in KINDS:
            raise GenzooError(f"filter kind must be one of {', '.join(KINDS)}, got {kind!r}")
        rating = given.get("min_rating")
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, float)) or not _finite(rating)):
            raise GenzooError(f"filter min_rating must be a finite number, got {rating!r}")
        synthetic = given.get("synthetic")
        if synthetic is not None and not isinstance(synthetic, bool):
            raise GenzooError(f"filter synthetic must be True (synthetic only), False (real only) or None, got {synthetic!r}")
        since, until = parse_time(given.get("since"), "since"), parse_time(given.get("until"), "until")
        if since is not None and until is not None and since > until:
            raise GenzooError("filter since is after until: nothing can match; swap them")
        return cls(**{**given, "since": since, "until": until, "min_rating": None if rating is None else float(rating)})

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


def rrf(rankings: list[list[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion of id lists (best first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, id_ in enumerate(ranking, start=1):
            scores[id_] = scores.get(id_, 0.0) + 1.0 / (k + rank)
    return scores


def weighted(keyword: list[tuple[int, float]], vector: list[tuple[int, float]], alpha: float = 0.5) -> dict[int, float]:
    """alpha * vector + (1 - alpha) * keyword, each list's scores min-max normalised to [0, 1]
    (higher is better in both inputs); an id absent from a list scores 0 there."""
    if not 0.0 <= alpha <= 1.0:
        raise GenzooError(f"alpha must lie in [0, 1] (weight of the vector side), got {alpha!r}")
    scores: dict[int, float] = {}
    for pairs, weight in ((keyword, 1.0 - alpha), (vector, alpha)):
        if not pairs:
            continue
        values = [s for _, s in pairs]
        lo, hi = min(values), max(values)
        for id_, s in pairs:
            norm = 1.0 if hi == lo else (s - lo) / (hi - lo)
            scores[id_] = scores.get(id_, 0.0) + weight * norm
    return scores

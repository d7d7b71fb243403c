"""Where a filtered hybrid query spends its time, on a store that store_bench.py filled.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/store_query_profile.py --db /tmp/storebench/store.db \
        --vectors /tmp/storebench/vectors.npz

Keyword side: the query plan SQLite picks (EXPLAIN QUERY PLAN) and the time of the same BM25
query over the full-text index alone, joined to the generations table for the filters, and
joined through the narrow covering index (schema.V5). Vector side: one numpy scan over every
row, the rows of one family gathered from a single id-ordered matrix (the layout before
segments), and the store's segmented index. Medians over the queries, ms, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from genzoo.core.atomic import write_atomic_file

import numpy as np


def median_ms(fn, items) -> float:
    times = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--vectors", type=Path, required=True, help="the cache store_bench.py --vectors wrote (the query vectors)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "store" / "store_query_profile.json")
    args = ap.parse_args()

    from genzoo.store import search as S
    from genzoo.store.sqlite import SqliteBackend

    cache = np.load(args.vectors)
    queries, qvecs, space = list(cache["queries"])[: args.queries], cache["query_vecs"][: args.queries], cache["space"].item()
    b = SqliteBackend(args.db)
    result = {"db": str(args.db), "queries": len(queries), "load_average_start": os.getloadavg()}
    matches = [S.fts_match(*b._match_terms(S.query_terms(q))) for q in queries]
    result["median_rows_matched"] = statistics.median(
        b._one("SELECT count(*) FROM generations_fts WHERE generations_fts MATCH ?", (m,))[0] for m in matches)

    bm25 = "SELECT {id}, bm25(generations_fts, 1.0, 1.0, 0.2) AS s FROM generations_fts {join} WHERE generations_fts MATCH ? {where} ORDER BY s LIMIT 50"
    variants = {
        "full-text index alone (no filter)": bm25.format(id="rowid", join="", where=""),
        "joined to the table, family filter": bm25.format(id="g.id", join="JOIN generations g ON g.id = generations_fts.rowid",
                                                          where="AND g.family = 'gpt'"),
        "joined through generations_search, family filter": bm25.format(
            id="g.id", join="JOIN generations g INDEXED BY generations_search ON g.id = generations_fts.rowid", where="AND g.family = 'gpt'"),
        "joined through generations_search, reader + family + real": bm25.format(
            id="g.id", join="JOIN generations g INDEXED BY generations_search ON g.id = generations_fts.rowid",
            where="AND (g.visibility = 'shared' OR g.owner_id = 5) AND g.family = 'bert' AND g.synthetic = 0"),
    }
    result["keyword"] = {}
    for name, sql in variants.items():
        plan = [r[3] for r in b.conn.execute("EXPLAIN QUERY PLAN " + sql, (matches[0],))]
        result["keyword"][name] = {"p50_ms": median_ms(lambda m: b.conn.execute(sql, (m,)).fetchall(), matches), "plan": plan}
        print(name, result["keyword"][name], flush=True)

    index = b._sync(space, None, "text")
    flat = np.concatenate([seg.vectors[: seg.n] for seg in index.segments.values()])  # one matrix, as before segments
    gpt = index.families.get("gpt")
    n_family = sum(seg.n for key, seg in index.segments.items() if key[1] == gpt)
    # in one id-ordered matrix a family's rows are spread over all of it (the bench cycles models)
    family_rows = np.sort(np.random.default_rng(0).choice(len(flat), n_family, replace=False))
    keep = index.mask(viewer=None, family="gpt")
    result["vector"] = {
        "rows": index.n, "segments": len(index.segments), "family share": round(len(family_rows) / len(flat), 3),
        "one matrix, every row": median_ms(lambda q: flat @ q, qvecs),
        "one matrix, family rows gathered": median_ms(lambda q: flat[family_rows] @ q, qvecs),
        "segments, family (store)": median_ms(lambda q: index.search(q, 50, keep), qvecs),
        "segments, every row (store)": median_ms(lambda q: index.search(q, 50), qvecs),
    }
    print(result["vector"], flush=True)
    result["load_average_end"] = os.getloadavg()
    write_atomic_file(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

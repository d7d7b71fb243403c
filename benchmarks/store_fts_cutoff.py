"""BM25 latency of keyword queries against the common-term cutoff, on a store that
``store_bench.py`` filled (100,000 pydocs records), the same 200 queries (40 used here).

    cd benchmarks && OMP_NUM_THREADS=1 ../.venv/bin/python store_fts_cutoff.py --db /tmp/storebench/store.db

For each cutoff (share of records above which a term is "common"), the median and p95 of the
bare FTS5 query (MATCH + ORDER BY bm25 LIMIT 50, no join, no filters).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path

from store_bench import pieces_and_queries

from genzoo.store.search import fts_any, fts_with_cutoff, query_terms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--unique", type=int, default=1_800)
    args = ap.parse_args()
    _, queries = pieces_and_queries(args.unique, args.queries)
    conn = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    n = conn.execute("SELECT max(rowid) FROM generations_fts").fetchone()[0]
    counts = {}
    for q in queries:
        for t in query_terms(q):
            counts[t] = conn.execute("SELECT count(*) FROM generations_fts WHERE generations_fts MATCH ?", (f'"{t}"',)).fetchone()[0]
    sql = "SELECT rowid, bm25(generations_fts, 1.0, 1.0, 0.2) s FROM generations_fts WHERE generations_fts MATCH ? ORDER BY s LIMIT 50"
    for share in (None, 0.05, 0.02, 0.01):
        times, matched = [], []
        for q in queries:
            terms = [t for t in query_terms(q) if counts[t] > 0]
            match = fts_any(terms) if share is None else fts_with_cutoff(terms, counts, share * n)
            matched.append(conn.execute("SELECT count(*) FROM generations_fts WHERE generations_fts MATCH ?", (match,)).fetchone()[0])
            t = time.perf_counter()
            conn.execute(sql, (match,)).fetchall()
            times.append(time.perf_counter() - t)
        times.sort()
        print(f"cutoff {'none' if share is None else f'{share:.0%}':>4}: p50 {1000 * statistics.median(times):6.1f} ms, "
              f"p95 {1000 * times[int(0.95 * (len(times) - 1))]:6.1f} ms, median rows matched {int(statistics.median(matched)):,}")


if __name__ == "__main__":
    main()

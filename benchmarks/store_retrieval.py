"""Retrieval quality of the store's keyword, vector and hybrid search on a labelled pydocs set.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/store_retrieval.py > store_retrieval.log 2>&1 &

Construction: every help topic of ``pydoc_data.topics`` (Python's own documentation) is cut into
400-character pieces, stored as text generations *without* the topic's name. The query for a topic
is its name with the separators turned into spaces ("augmented-assignment" -> "augmented
assignment", "typesseq-mutable" -> "typesseq mutable"); the relevant records are that topic's
pieces. Topics whose name has no letters are skipped. Metrics: recall@10 (relevant records found in
the top 10, over min(10, relevant)) and nDCG@10 with binary gains, averaged over topics.
Modes: keyword (BM25), vector (all-MiniLM-L6-v2), hybrid by reciprocal rank fusion (k=60) and by
a weighted sum (alpha 0.5), each with the common-term cutoff off and forced on (1%).
Results: benchmarks/results/store/store_retrieval.json.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "store"


def labelled_set(size: int = 400):
    from pydoc_data.topics import topics

    records, queries = [], []
    for name in sorted(topics):
        text = " ".join(topics[name].split())
        ids = []
        for i in range(0, len(text), size):
            piece = text[i:i + size]
            if len(piece) >= 100:
                ids.append(len(records))
                records.append(piece)
        query = " ".join(re.split(r"[-_]", name)).strip()
        if ids and re.search(r"[a-z]", query):
            queries.append((query, set(ids)))
    return records, queries


def ndcg_at_10(ranked: list[int], relevant: set[int]) -> float:
    dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(ranked[:10]) if i in relevant)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(10, len(relevant))))
    return dcg / ideal


MODES = [("keyword", {}), ("vector", {}), ("hybrid", {"fusion": "rrf"}), ("hybrid", {"fusion": "weighted", "alpha": 0.5})]


def mode_name(mode: str, options: dict) -> str:
    return f"{mode}{' ' + options['fusion'] if options else ''}"


def retrieval_quality(store, queries, row_of: dict[int, int], mode: str, options: dict) -> dict:
    """Mean recall@10 and nDCG@10 of ``store.search`` over the labelled queries."""
    recall, ndcg = [], []
    for query, relevant in queries:
        ranked = [row_of[h.generation.id] for h in store.search(query, mode=mode, k=10, **options)]
        recall.append(len(set(ranked) & relevant) / min(10, len(relevant)))
        ndcg.append(ndcg_at_10(ranked, relevant))
    return {"recall@10": round(sum(recall) / len(recall), 3), "ndcg@10": round(sum(ndcg) / len(ndcg), 3)}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from genzoo.store import sql_common as backend  # the cutoff's settings, shared by both backends
    from genzoo.store.api import Store
    from genzoo.store.records import NewGeneration
    from genzoo.tasks.encoders import MiniLMEncoder

    records, queries = labelled_set()
    db = Path(tempfile.mkdtemp(prefix="store-retrieval-")) / "store.db"
    store = Store.open(db, encoder=MiniLMEncoder(), redact=False)
    t = time.perf_counter()
    ids = store.record_many([NewGeneration(kind="text", text=r) for r in records])
    result = {"records": len(records), "queries": len(queries), "ingest_and_embed_s": round(time.perf_counter() - t, 1)}
    row_of = {gid: i for i, gid in enumerate(ids)}
    print(result, flush=True)
    for cutoff in ("off", "on (1%)"):
        backend.CUTOFF_FROM, backend.COMMON_SHARE = (10**12, 0.01) if cutoff == "off" else (0, 0.01)
        store.backend._df, store.backend._df_size = {}, 0
        for mode, options in MODES:
            if mode == "vector" and cutoff != "off":
                continue  # the cutoff touches keyword matching only
            name = f"{mode_name(mode, options)}, cutoff {cutoff}"
            result[name] = retrieval_quality(store, queries, row_of, mode, options)
            print(name, result[name], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "store_retrieval.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""A store of N text generations for the load test, filled fast.

The texts are the pydocs pieces of ``benchmarks/store_bench.py`` (Python's own help topics cut into
200-character pieces); only ``unique`` of them are embedded with all-MiniLM-L6-v2 (cached in the
work folder), the N records cycle through them with a variant tag, each vector perturbed a little
(sigma 0.02, renormalised) so records differ in both indexes. Records are written with
``Store.record_many`` in batches of 1,000, ``encoder=None, redact=False`` (vectors are given), all
``shared`` so every caller of the server sees them. Queries: random 3-6 word phrases from pieces
not stored.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: store_bench's pieces and queries

SPACE = "minilm-l6-v2"  # genzoo.tasks.encoders.MiniLMEncoder.space: what the server embeds queries into
LOAD_USER = "loadtest"


def base_vectors(unique: int, vectors_file: Path) -> tuple[list[str], np.ndarray, list[str]]:
    from store_bench import pieces_and_queries

    base, queries = pieces_and_queries(unique, 200)
    if vectors_file.exists():
        cached = np.load(vectors_file, allow_pickle=False)
        if list(cached["base"]) == base:
            return base, cached["base_vecs"], queries
    import torch

    from genzoo.tasks.encoders import MiniLMEncoder

    t = time.perf_counter()
    vecs = np.asarray(MiniLMEncoder().encode(base), np.float32)
    print(f"embedded {len(base)} texts with MiniLM in {time.perf_counter() - t:.1f} s (torch threads {torch.get_num_threads()})", flush=True)
    vectors_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(vectors_file, base=np.array(base), base_vecs=vecs)
    return base, vecs, queries


def fill_store(db: Path, n: int, base: list[str], base_vecs: np.ndarray, batch: int = 1000) -> dict:
    """Create ``db`` with ``n`` shared text generations; returns timings."""
    from genzoo.store.api import Store
    from genzoo.store.records import NewGeneration

    rng = np.random.default_rng(0)
    families = ["gpt", "llama", "t5", "bert"]
    t0 = time.perf_counter()
    with Store.open(db, encoder=None, redact=False) as store:
        for start in range(0, n, batch):
            gens = []
            for i in range(start, min(n, start + batch)):
                j = i % len(base)
                vec = base_vecs[j] + rng.normal(0, 0.02, base_vecs.shape[1]).astype(np.float32)
                gens.append(NewGeneration(kind="text", prompt=f"prompt {i % 997}", text=f"{base[j]} [variant {i // len(base)}]",
                                          family=families[i % 4], synthetic=i % 10 != 0, visibility="shared",
                                          embedding=vec / np.linalg.norm(vec), space=SPACE))
            store.record_many(gens)
            if (start // batch) % 20 == 0:
                print(f"  recorded {start + len(gens):,} ({time.perf_counter() - t0:.1f} s)", flush=True)
    seconds = time.perf_counter() - t0
    return {"records": n, "seconds": round(seconds, 1), "records_per_s": round(n / seconds),
            "db_mb": round(sum(f.stat().st_size for f in db.parent.glob(db.name + "*")) / 2**20, 1)}


def count(db: Path, table: str) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # table: a constant of ours
    finally:
        conn.close()


def missing(db: Path, table: str, ids: list[int]) -> int:
    """How many of ``ids`` are not rows of ``table``."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ids, found = sorted(set(ids)), 0
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            found += conn.execute(f"SELECT count(*) FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchone()[0]
        return len(ids) - found
    finally:
        conn.close()


def writer_key(db: Path) -> str:
    """A fresh API key for the ``loadtest`` writer (made on first use)."""
    from genzoo.store.api import Store

    with Store.open(db, encoder=None, redact=False) as store:
        if not any(u["name"] == LOAD_USER for u in store.users()):
            return store.create_user(LOAD_USER, "writer")[1]
        return store.new_key(LOAD_USER)


def queries(unique: int, n: int) -> list[str]:
    """``n`` phrases of 3-6 words drawn from the pydocs pieces not stored (store_bench's queries)."""
    from store_bench import pieces_and_queries

    return pieces_and_queries(unique, n)[1]

"""Filtered vector search on the PostgreSQL backend at 100,000 records: the HNSW walk against the
exact scan the backend switches to when the planner estimates few rows pass (``EXACT_BELOW``).

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/store_pg_filtered.py --vectors /tmp/genzoo-store-pg-vectors.npz > filtered.log 2>&1 &

The store is filled fast rather than through ``record_many`` (store_pg.py measured that path: 176
records/s): one record through the Store registers the embedding space and its HNSW index; the
index is dropped, 100,000 generations with their full-text rows and vectors are COPYed in (the
vectors of store_pg.py: 1,102 pydocs passages cycled, perturbed), and the index is rebuilt with its
own definition. Owners cycle over 4 users, a third shared, 10% real, 4 families. Per filter case,
200 queries (vector mode, k=10): p50 with the switch off (``EXACT_BELOW = 0``: always HNSW) and
on (the default), and recall@10 against numpy's exact answer over the rows the filter passes.
Results: benchmarks/results/store/store_pg_filtered.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from store_bench import Precomputed  # noqa: E402
from store_retrieval import labelled_set  # noqa: E402

OUT = Path(__file__).parent / "results" / "store"
FAMILIES = ["gpt", "llama", "t5", "bert"]


def vec_text(v) -> str:
    return "[" + ",".join("%.8g" % x for x in v.tolist()) + "]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--vectors", type=Path, required=True)
    args = ap.parse_args()
    from genzoo.core.atomic import write_atomic_file
    from genzoo.store import postgres as pgb
    from genzoo.store.api import Store
    from genzoo.store.pg_local import start_primary, url_for

    records, _ = labelled_set()
    cached = np.load(args.vectors)
    known = dict(zip(cached["texts"].tolist(), cached["vectors"]))
    vecs = np.stack([known[r] for r in records])
    pyrng, rng = random.Random(0), np.random.default_rng(0)
    words = re.findall(r"[a-z]{4,}", " ".join(records).lower())
    queries = [" ".join(pyrng.sample(words, pyrng.randint(3, 6))) for _ in range(args.queries)]
    qvecs = {q: known[q] for q in queries}
    data = np.zeros((args.n, vecs.shape[1]), np.float32)
    for i in range(args.n):
        v = vecs[i % len(records)] + rng.normal(0, 0.02, vecs.shape[1]).astype(np.float32)
        data[i] = v / np.linalg.norm(v)

    root = Path(tempfile.mkdtemp(prefix="pg-filtered-"))
    server = start_primary(root / "primary")
    result = {"n": args.n, "queries": len(queries), "exact_below": pgb.EXACT_BELOW, "load_avg_at_start": os.getloadavg()}
    try:
        with pgb.connect(server.get_uri()) as admin:
            admin.execute("CREATE DATABASE filtered")
        url = url_for(server.get_uri(), "filtered")
        enc = Precomputed("minilm-l6-v2", qvecs)
        store = Store.open(url, encoder=enc, redact=False)
        users = [store.user.id] + [store.create_user(name, "writer")[0].id for name in ("ana", "ben", "cyd")]
        _, reader_key = store.create_user("rex", "reader")
        store.record(kind="text", text="seed", embedding=data[0])  # registers the space and its HNSW index
        c = store.backend.w
        name, definition = c.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'embeddings_hnsw_%'").fetchone()
        c.execute(f"DROP INDEX {name}")
        base = c.execute("SELECT max(id) FROM generations").fetchone()[0]
        now = time.time()
        meta = []
        with c.cursor().copy("COPY generations (id, kind, family, owner_id, visibility, text, content_sha256, manifest, synthetic, "
                             "created_at) FROM STDIN") as copy:
            for i in range(args.n):
                m = dict(owner=users[i % 4], shared=i % 3 == 0, family=FAMILIES[(i // 7) % 4], real=i % 10 == 0)
                meta.append(m)
                copy.write_row((base + 1 + i, "text", m["family"], m["owner"], "shared" if m["shared"] else "private",
                                f"{records[i % len(records)]} [variant {i // len(records)}]", "h", "{}", 0 if m["real"] else 1, now + i * 1e-3))
        with c.cursor().copy("COPY generation_text (generation_id, text, family) FROM STDIN") as copy:
            for i in range(args.n):
                copy.write_row((base + 1 + i, records[i % len(records)], meta[i]["family"]))
        with c.cursor().copy("COPY embeddings (space, generation_id, vector) FROM STDIN") as copy:
            for i in range(args.n):
                copy.write_row(("minilm-l6-v2", base + 1 + i, vec_text(data[i])))
        c.execute("SELECT setval(pg_get_serial_sequence('generations', 'id'), %s)", (base + args.n,))
        c.execute("SET maintenance_work_mem = '512MB'")
        t = time.perf_counter()
        c.execute(definition)
        result["index_build_s"] = round(time.perf_counter() - t, 1)
        c.execute("VACUUM ANALYZE")
        reader = Store.open(url, api_key=reader_key, encoder=enc, redact=False)
        owner_of = np.array([m["owner"] for m in meta])
        shared = np.array([m["shared"] for m in meta])
        family = np.array([m["family"] for m in meta])
        real = np.array([m["real"] for m in meta])
        cases = {
            "family (25% pass)": (store, {"family": "gpt"}, family == "gpt"),
            "reader (visibility, 33%)": (reader, {}, shared),
            "family + real (2.5%)": (store, {"family": "bert", "synthetic": False}, (family == "bert") & real),
            "reader + family + real (0.8%)": (reader, {"family": "bert", "synthetic": False}, shared & (family == "bert") & real),
            "user (25%) + real": (store, {"user": "ben", "synthetic": False}, (owner_of == users[2]) & real),
        }
        for case, (s, filters, mask) in cases.items():
            rows = np.flatnonzero(mask)
            for switch in ("HNSW always", "exact below"):
                pgb.EXACT_BELOW = 0 if switch == "HNSW always" else result["exact_below"]
                times, recall = [], []
                for q in queries:
                    qv = qvecs[q] / np.linalg.norm(qvecs[q])
                    t = time.perf_counter()
                    got = {h.generation.id for h in s.search(q, mode="vector", k=10, **filters)}
                    times.append(time.perf_counter() - t)
                    exact = set((rows[np.argsort(-(data[rows] @ qv))[:10]] + base + 1).tolist())
                    recall.append(len(got & exact) / max(1, len(exact)))
                result.setdefault(case, {})[switch] = {"p50_ms": round(1000 * statistics.median(times), 2),
                                                       "p95_ms": round(1000 * sorted(times)[int(0.95 * (len(times) - 1))], 2),
                                                       "recall@10": round(statistics.fmean(recall), 3)}
                print(case, switch, result[case][switch], flush=True)
        pgb.EXACT_BELOW = result["exact_below"]
        reader.close()
        store.close()
    finally:
        server.cleanup()
    result["load_avg_at_end"] = os.getloadavg()
    write_atomic_file(OUT / "store_pg_filtered.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

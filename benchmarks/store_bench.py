"""The generation store at 100,000 text generations (SQLite, one thread): ingest rate with the
embedding time reported apart, and hybrid-query latency p50/p95 with and without filters.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/store_bench.py > store_bench.log 2>&1 &
    # again on the same store, without embedding or ingesting:
    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/store_bench.py --db /tmp/storebench/store.db \
        --vectors /tmp/storebench/vectors.npz --reuse > store_bench.log 2>&1 &

Data: the texts are passages of Python's own help topics (``pydoc_data.topics``, the pydocs set),
cut into 200-character pieces (2,171 of them). Only ``--unique`` of them (default 1,800) are embedded with
all-MiniLM-L6-v2 (that is the "embedding" figure); the 100,000 records cycle through them, each
with a variant tag appended to its text and its vector perturbed by Gaussian noise (sigma 0.02 per
coordinate, then renormalised: cosine ~0.93 to its source), so records differ in both indexes.
Queries: 200 phrases of 3-6 random words from the pieces not embedded, embedded once beforehand; latency is the
store's side (full-text + vector + fusion + fetching the rows); the query embedding's own time is
reported apart. Results go to benchmarks/results/store/ (JSON + PNG).
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

from genzoo.core.atomic import write_atomic_with

import numpy as np

OUT = Path(__file__).parent / "results" / "store"


def pydoc_pieces(size: int = 200) -> list[str]:
    from pydoc_data.topics import topics

    pieces = []
    for name in sorted(topics):
        text = " ".join(topics[name].split())
        pieces += [f"{name}: {text[i:i + size]}" for i in range(0, len(text), size) if len(text[i:i + size]) > 80]
    return pieces


def random_queries(texts: list[str], n: int, rng: random.Random) -> list[str]:
    """``n`` queries of 3-6 random words (4+ letters) drawn from ``texts``."""
    words = re.findall(r"[a-z]{4,}", " ".join(texts).lower())
    return [" ".join(rng.sample(words, rng.randint(3, 6))) for _ in range(n)]


def pieces_and_queries(unique: int, n_queries: int) -> tuple[list[str], list[str]]:
    """The pydocs pieces shuffled (seed 0): the first ``unique`` to store, and queries drawn
    from the others (the same ones in store_bench, store_vs_lancedb and store_fts_cutoff)."""
    pieces = pydoc_pieces()
    rng = random.Random(0)
    rng.shuffle(pieces)
    return pieces[:unique], random_queries(pieces[unique:], n_queries, rng)


class Precomputed:
    """The query vectors computed beforehand, so latency measures the store, not MiniLM."""

    kind = "text"

    def __init__(self, space: str, table: dict[str, np.ndarray]):
        self.space, self.table, self.dim = space, table, 384

    def encode(self, texts):
        return np.stack([self.table[t] for t in texts])


def percentiles(xs):
    xs = sorted(xs)
    return {"p50_ms": round(1000 * statistics.median(xs), 2), "p95_ms": round(1000 * xs[int(0.95 * (len(xs) - 1))], 2),
            "mean_ms": round(1000 * statistics.fmean(xs), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--unique", type=int, default=1_800)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--vectors", type=Path, default=None,
                    help="cache of the MiniLM vectors (base texts and queries): written on the first run, read after")
    ap.add_argument("--reuse", action="store_true",
                    help="--db already holds --n records from an earlier run: skip the ingest, measure the queries")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.reuse and (args.db is None or not args.db.exists()):
        ap.error("--reuse needs --db pointing at a store an earlier run filled")

    import torch

    torch.set_num_threads(1)
    from genzoo.store.api import Store
    from genzoo.tasks.encoders import MiniLMEncoder

    rng = np.random.default_rng(0)
    base, queries = pieces_and_queries(args.unique, args.queries)
    result = {"n": args.n, "unique_texts_embedded": len(base), "queries": len(queries), "threads": 1,
              "machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0],
              "load_average_start": os.getloadavg()}  # other people's jobs share the machine: say how busy it was

    cached = np.load(args.vectors, allow_pickle=False) if args.vectors and args.vectors.exists() else None
    if cached is not None and list(cached["base"]) == base and list(cached["queries"]) == queries:
        base_vecs, qvecs = cached["base_vecs"], dict(zip(queries, cached["query_vecs"]))
        result["embedding"] = {"cached": str(args.vectors)}
        space = cached["space"].item()
    else:
        encoder = MiniLMEncoder()
        space = encoder.space
        t = time.perf_counter()
        encoder.encode(base[:8])  # load the model
        result["encoder_load_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        base_vecs = encoder.encode(base)
        embed_s = time.perf_counter() - t
        result["embedding"] = {"texts": len(base), "seconds": round(embed_s, 1), "texts_per_s": round(len(base) / embed_s, 1)}
        single = []
        qvecs = {}
        for q in queries:
            t = time.perf_counter()
            qvecs[q] = encoder.encode([q])[0]
            single.append(time.perf_counter() - t)
        result["query_embedding"] = percentiles(single)
        print("embedding:", result["embedding"], "query embedding:", result["query_embedding"], flush=True)

        if args.vectors:
            args.vectors.parent.mkdir(parents=True, exist_ok=True)
            np.savez(args.vectors, base=np.array(base), queries=np.array(queries), base_vecs=np.asarray(base_vecs, np.float32),
                     query_vecs=np.stack([qvecs[q] for q in queries]), space=np.array(space))

    db = args.db or Path(tempfile.mkdtemp(prefix="store-bench-")) / "store.db"
    store = Store.open(db, encoder=Precomputed(space, qvecs), redact=False)
    if args.reuse:
        n_stored = store.backend.count("generations")
        if n_stored < args.n:
            raise SystemExit(f"{db} holds {n_stored:,} records, fewer than --n {args.n:,}")
        reader_key = store.new_key("rex")
        # the time the first run took as "since": when the batch holding record n/2 committed
        mid_time = store.backend.rows("SELECT max(created_at) AS t FROM generations WHERE id <= ?",
                                      [args.n // 2 + args.batch])[0]["t"]
        result["ingest"] = {"reused": str(db), "records": n_stored}
    else:
        mid_time, reader_key = ingest(args, store, db, base, base_vecs, space, qvecs, rng, result)
    reader = Store.open(db, api_key=reader_key, encoder=Precomputed(space, qvecs), redact=False)
    t = time.perf_counter()
    store.search(queries[0], k=10)
    result["first_query_s"] = round(time.perf_counter() - t, 2)  # loads every vector into the index
    reader.search(queries[0], k=10)
    cases = {
        "no filter": (store, {}),
        "family": (store, {"family": "gpt"}),
        "family+synthetic+since": (store, {"family": "llama", "synthetic": True, "since": mid_time}),
        "user+min_rating": (store, {"user": "ben", "min_rating": 3}),
        "model": (store, {"model": "t5-1"}),
        "reader (visibility)": (reader, {}),
        "reader+family+real": (reader, {"family": "bert", "synthetic": False}),
    }
    result["hybrid"] = {}
    for name, (s, filters) in cases.items():
        for mode in ("hybrid", "keyword", "vector"):
            times, counts = [], []
            for q in queries:
                t = time.perf_counter()
                hits = s.search(q, mode=mode, k=10, **filters)
                times.append(time.perf_counter() - t)
                counts.append(len(hits))
            stats = {**percentiles(times), "mean_hits": round(statistics.fmean(counts), 2)}
            result["hybrid" if mode == "hybrid" else mode + "_only"] = result.get("hybrid" if mode == "hybrid" else mode + "_only", {})
            result["hybrid" if mode == "hybrid" else mode + "_only"][name] = stats
            print(f"{mode:8s} {name:24s} {stats}", flush=True)
    result["integrity_check"] = store.integrity_check()
    result["load_average_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "store_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "store_latency.png")
    print(json.dumps(result, indent=2))


def ingest(args, store, db, base, base_vecs, space, qvecs, rng, result):
    from genzoo.store.api import Store
    from genzoo.store.records import ModelRecord, NewGeneration

    users = {}
    for name in ("ana", "ben", "cyd"):
        _, key = store.create_user(name, "writer")
        users[name] = Store.open(db, api_key=key, encoder=Precomputed(space, qvecs), redact=False)
    _, reader_key = store.create_user("rex", "reader")
    families = ["gpt", "llama", "t5", "bert"]
    models = [store.register_model(ModelRecord(name=f"{f}-{i}", family=f, checkpoint_sha256=f"{f}{i}".ljust(64, "0"))) for f in families for i in range(2)]
    writers = [store] + list(users.values())

    t_all = time.perf_counter()
    ingest_times, mid_time = [], None
    for start in range(0, args.n, args.batch):
        gens = []
        for i in range(start, min(args.n, start + args.batch)):
            j = i % len(base)
            mid = models[i % len(models)]
            vec = base_vecs[j] + rng.normal(0, 0.02, base_vecs.shape[1]).astype(np.float32)
            gens.append(NewGeneration(kind="text", prompt=f"prompt {i % 997}", text=f"{base[j]} [variant {i // len(base)}]",
                                      model_id=mid, family=families[(mid - 1) // 2], synthetic=i % 10 != 0,
                                      visibility="shared" if i % 3 == 0 else "private", embedding=vec / np.linalg.norm(vec)))
        writer = writers[(start // args.batch) % len(writers)]
        t = time.perf_counter()
        writer.record_many(gens)
        ingest_times.append(time.perf_counter() - t)
        if start >= args.n // 2 and mid_time is None:
            mid_time = time.time()
        if (start // args.batch) % 10 == 0:
            print(f"ingested {start + len(gens):,} ({sum(ingest_times):.1f} s)", flush=True)
    ingest_s = time.perf_counter() - t_all
    for gid in range(1, args.n + 1, 20):  # 5% of the records rated
        store.feedback(gid, rating=1 + (gid // 20) % 5)
    result["ingest"] = {"records": args.n, "seconds": round(ingest_s, 1), "records_per_s": round(args.n / ingest_s, 1),
                        "batch": args.batch, "db_mb": round(sum(f.stat().st_size for f in db.parent.glob(db.name + "*")) / 2**20, 1)}
    print("ingest:", result["ingest"], flush=True)

    return mid_time, reader_key


def plot(result: dict, path: Path) -> None:
    latency_bars(path, [("keyword p50", result["keyword_only"]), ("vector p50", result["vector_only"]),
                        ("hybrid (RRF) p50", result["hybrid"])],
                 f"genzoo store, {result['n']:,} text generations, SQLite, 1 thread")


def latency_bars(path: Path, series: list[tuple[str, dict]], title: str) -> None:
    """One bar per (series, filter case) at its p50, a tick at its p95, and the 20 ms goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(series[0][1])
    x = np.arange(len(names))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (label, cases) in enumerate(series):
        off = (i - (len(series) - 1) / 2) * width
        ax.bar(x + off, [cases[n]["p50_ms"] for n in names], width, label=label)
        ax.scatter(x + off, [cases[n]["p95_ms"] for n in names], marker="_", s=200, color="k")
    ax.axhline(20, ls="--", color="r", lw=1, label="goal: p50 < 20 ms")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("ms per query (bar p50, tick p95)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic_with(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)

if __name__ == "__main__":
    main()

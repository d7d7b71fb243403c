"""The generation store at 100,000 text generations (SQLite, one thread): ingest rate with the
embedding time reported apart, and hybrid-query latency p50/p95 with and without filters.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/store_bench.py > store_bench.log 2>&1 &

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

import numpy as np

OUT = Path(__file__).parent / "results" / "store"


def pydoc_pieces(size: int = 200) -> list[str]:
    from pydoc_data.topics import topics

    pieces = []
    for name in sorted(topics):
        text = " ".join(topics[name].split())
        pieces += [f"{name}: {text[i:i + size]}" for i in range(0, len(text), size) if len(text[i:i + size]) > 80]
    return pieces


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
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from genzoo.store.api import Store
    from genzoo.store.embed import MiniLMEncoder
    from genzoo.store.records import ModelRecord, NewGeneration

    rng, pyrng = np.random.default_rng(0), random.Random(0)
    pieces = pydoc_pieces()
    pyrng.shuffle(pieces)
    base = pieces[: args.unique]
    words = re.findall(r"[a-z]{4,}", " ".join(pieces[args.unique:]).lower())
    queries = [" ".join(pyrng.sample(words, pyrng.randint(3, 6))) for _ in range(args.queries)]
    result = {"n": args.n, "unique_texts_embedded": len(base), "queries": len(queries), "threads": 1,
              "machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0]}

    encoder = MiniLMEncoder()
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

    db = args.db or Path(tempfile.mkdtemp(prefix="store-bench-")) / "store.db"
    store = Store.open(db, encoder=Precomputed(encoder.space, qvecs), redact=False)
    users = {}
    for name in ("ana", "ben", "cyd"):
        _, key = store.create_user(name, "writer")
        users[name] = Store.open(db, api_key=key, encoder=Precomputed(encoder.space, qvecs), redact=False)
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

    reader = Store.open(db, api_key=reader_key, encoder=Precomputed(encoder.space, qvecs), redact=False)
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
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "store_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, OUT / "store_latency.png")
    print(json.dumps(result, indent=2))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["hybrid"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    for off, (key, label) in zip((-0.27, 0, 0.27), (("keyword_only", "keyword"), ("vector_only", "vector"), ("hybrid", "hybrid (RRF)"))):
        p50 = [result[key][n]["p50_ms"] for n in names]
        p95 = [result[key][n]["p95_ms"] for n in names]
        ax.bar(x + off, p50, 0.27, label=f"{label} p50")
        ax.scatter(x + off, p95, marker="_", s=200, color="k")
    ax.axhline(20, ls="--", color="r", lw=1, label="goal: p50 < 20 ms")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("ms per query (bar p50, tick p95)")
    ax.set_title(f"genzoo store, {result['n']:,} text generations, SQLite, 1 thread")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()

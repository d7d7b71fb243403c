"""genzoo's store against LanceDB, in one run, on the same vectors and queries.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/store_vs_lancedb.py > store_vs_lancedb.log 2>&1 &

Data as in store_bench.py: Python help-topic passages (200 characters), ``--unique`` of them
embedded with all-MiniLM-L6-v2, cycled to ``--n`` records, each vector perturbed (Gaussian, sigma
0.02 per coordinate, renormalised); 4 families in turn, 10% real. Queries: 200 phrases of 3-6
random words from passages not embedded, embedded once beforehand (latency is the database's side).

Measured on both: ingest (batches of 1,000 records holding text, family, synthetic flag and
vector; genzoo also writes its full-text index, prompt-less rows and audit entries in each
transaction), then k=10 cosine queries without a filter and with ``family = 'gpt'`` (a quarter of
the rows): p50/p95 latency and recall@10 against exact brute force (numpy over the same vectors,
the same filter). LanceDB is first validated on its own: without a vector index its search is
exact, so its recall must be 1.0 (this checks the pipeline: ids, metric, filter). Then its ANN
indexes at their defaults: IVF_PQ and IVF_HNSW_SQ, cosine. Each passage has n / unique perturbed
copies whose order among themselves is noise, so recall@10 is harsh on approximate search here;
``passage_recall`` (did the results reach the passages behind the exact top 10) is reported beside
it. Results: results/store/store_vs_lancedb.json
and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from store_bench import Precomputed, percentiles, pieces_and_queries  # noqa: E402

OUT = Path(__file__).parent / "results" / "store"
FILTER_FAMILY = "gpt"


def recall_at_10(found: list[list[int]], exact: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / max(1, len(e)) for f, e in zip(found, exact)]))


def passage_recall(found: list[list[int]], exact: list[list[int]], unique: int) -> float:
    """Share of the passages behind the exact top 10 that the results also reach (row % unique is
    the passage a record copies): each passage has n / unique perturbed copies, whose order among
    themselves is noise, so this says whether a search found the right passages at all."""
    return float(np.mean([len({i % unique for i in f} & {i % unique for i in e}) / max(1, len({i % unique for i in e}))
                          for f, e in zip(found, exact)]))


def timed(fn, queries):
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t)
    return percentiles(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--unique", type=int, default=1_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1_000)
    args = ap.parse_args()

    import lancedb
    import pyarrow as pa
    import torch
    from lancedb.index import IvfHnswSq, IvfPq

    torch.set_num_threads(1)
    from genzoo.store.api import Store
    from genzoo.tasks.encoders import MiniLMEncoder
    from genzoo.store.records import NewGeneration

    rng = np.random.default_rng(0)
    base, queries = pieces_and_queries(args.unique, args.queries)
    result = {"n": args.n, "unique_texts_embedded": len(base), "queries": len(queries), "threads": 1, "machine": f"{os.cpu_count()} cores",
              "lancedb": lancedb.__version__, "filter": f"family = '{FILTER_FAMILY}'"}
    enc = MiniLMEncoder()
    t = time.perf_counter()
    base_vecs = enc.encode(base)
    qmat = enc.encode(queries)
    result["embedding_s"] = round(time.perf_counter() - t, 1)
    print("embedded", result["embedding_s"], "s", flush=True)

    families = np.array(["gpt", "llama", "t5", "bert"])[np.arange(args.n) % 4]
    synthetic = np.arange(args.n) % 10 != 0
    vecs = base_vecs[np.arange(args.n) % len(base)] + rng.normal(0, 0.02, (args.n, base_vecs.shape[1])).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    texts = [f"{base[i % len(base)]} [variant {i // len(base)}]" for i in range(args.n)]

    # exact answers: row numbers (generation id = row + 1 in the fresh store)
    sims = qmat @ vecs.T
    exact_all = [list(np.argsort(-s, kind="stable")[:10]) for s in sims]
    fam_rows = np.flatnonzero(families == FILTER_FAMILY)
    exact_fam = [list(fam_rows[np.argsort(-s[fam_rows], kind="stable")[:10]]) for s in sims]
    qvecs = {q: qmat[i] for i, q in enumerate(queries)}

    # ---- genzoo
    db = Path(tempfile.mkdtemp(prefix="gz-vs-lance-")) / "store.db"
    store = Store.open(db, encoder=Precomputed(enc.space, qvecs), redact=False)
    t = time.perf_counter()
    for lo in range(0, args.n, args.batch):
        hi = min(args.n, lo + args.batch)
        store.record_many([NewGeneration(kind="text", text=texts[i], family=str(families[i]), synthetic=bool(synthetic[i]),
                                         embedding=vecs[i]) for i in range(lo, hi)])
    gz_ingest = time.perf_counter() - t
    t = time.perf_counter()
    store.search(queries[0], mode="vector", k=10)
    first = time.perf_counter() - t
    g = {"ingest_records_per_s": round(args.n / gz_ingest, 1), "ingest_s": round(gz_ingest, 1), "first_query_s": round(first, 2)}
    for name, filt, exact in (("no filter", {}, exact_all), ("family filter", {"family": FILTER_FAMILY}, exact_fam)):
        lat, hits = timed(lambda q: [h.generation.id - 1 for h in store.search(q, mode="vector", k=10, **filt)], queries)
        g[name] = {**lat, "recall_at_10": round(recall_at_10(hits, exact), 4), "passage_recall": round(passage_recall(hits, exact, len(base)), 4)}
        hlat, _ = timed(lambda q: store.search(q, mode="hybrid", k=10, **filt), queries)
        g[name]["hybrid"] = hlat
        print("genzoo", name, g[name], flush=True)
    result["genzoo"] = g
    store.close()

    # ---- LanceDB
    ldir = tempfile.mkdtemp(prefix="lance-")
    conn = lancedb.connect(ldir)

    def batch(lo, hi):
        return pa.table({"id": pa.array(np.arange(lo, hi), pa.int64()), "text": pa.array(texts[lo:hi]),
                         "family": pa.array(families[lo:hi]), "synthetic": pa.array(synthetic[lo:hi]),
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs[lo:hi].ravel()), vecs.shape[1])})

    t = time.perf_counter()
    table = conn.create_table("gens", data=batch(0, min(args.n, args.batch)))
    for lo in range(args.batch, args.n, args.batch):
        table.add(batch(lo, min(args.n, lo + args.batch)))
    l_ingest = time.perf_counter() - t
    lres = {"ingest_records_per_s": round(args.n / l_ingest, 1), "ingest_s": round(l_ingest, 1)}

    def search(q, where=None, **opts):
        s = table.search(qvecs[q]).distance_type("cosine").limit(10).select(["id", "_distance"])
        if opts.get("nprobes"):
            s = s.nprobes(opts["nprobes"])
        if opts.get("refine_factor"):
            s = s.refine_factor(opts["refine_factor"])
        if where:
            s = s.where(where, prefilter=True)
        return s.to_arrow()["id"].to_pylist()

    def measure(label, **opts):
        out = {}
        for name, where, exact in (("no filter", None, exact_all), ("family filter", f"family = '{FILTER_FAMILY}'", exact_fam)):
            search(queries[0], where, **opts)  # warm
            lat, hits = timed(lambda q: search(q, where, **opts), queries)
            out[name] = {**lat, "recall_at_10": round(recall_at_10(hits, exact), 4),
                         "passage_recall": round(passage_recall(hits, exact, len(base)), 4)}
            print("lancedb", label, name, out[name], flush=True)
        return out

    lres["exact (no index)"] = measure("exact")
    for label, config in (("IVF_PQ", IvfPq(distance_type="cosine")), ("IVF_HNSW_SQ", IvfHnswSq(distance_type="cosine"))):
        t = time.perf_counter()
        table.create_index("vector", config=config, replace=True)
        build = time.perf_counter() - t
        lres[label] = {"build_s": round(build, 1), **measure(label)}
        if label == "IVF_PQ":
            lres["IVF_PQ refine_factor=10, nprobes=50"] = measure("IVF_PQ refined", refine_factor=10, nprobes=50)
    result["lancedb"] = lres
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "store_vs_lancedb.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, OUT / "store_vs_lancedb.png")
    print(json.dumps(result, indent=2))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("genzoo exact", result["genzoo"])] + [(f"lancedb {k}", v) for k, v in result["lancedb"].items() if isinstance(v, dict)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, title in ((axes[0], "p50_ms", "k=10 query p50 (ms)"), (axes[1], "recall_at_10", "recall@10 vs exact")):
        xs = np.arange(len(rows))
        for j, (filt, shift) in enumerate((("no filter", -0.2), ("family filter", 0.2))):
            ax.bar(xs + shift, [r[filt][metric] for _, r in rows], width=0.4, label=filt)
        ax.set_xticks(xs, [name for name, _ in rows], rotation=25, ha="right", fontsize=8)
        ax.set_title(title)
    axes[0].legend()
    fig.suptitle(f"{result['n']:,} vectors (384-d), {result['queries']} queries, 1 thread")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()

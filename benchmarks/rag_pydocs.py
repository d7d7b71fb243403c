"""RAG over pydocs: retrieval hit rate for questions whose answer document is known, and the cost
of an end-to-end `rag ask` with a genzoo GPT.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/rag_pydocs.py --model runs/sweep-c > rag_pydocs.log 2>&1 &

Construction: every help topic of ``pydoc_data.topics`` (Python's own documentation, the text the
pydocs set is built from) is written to its own file named by number only (``0042.txt``: the name
must not give the answer away) and indexed with ``genzoo.store.rag`` at the given chunk size
(MiniLM vectors). The question for a topic is "What is <topic name with separators as spaces> in
Python?" ("augmented-assignment" -> "What is augmented assignment in Python?"); its answer chunks
are the chunks of that topic's file. Topics whose name has no letters are skipped. Metrics, per
retrieval mode: hit@1 and hit@4 (an answer chunk among the first 1 / 4 sources; 4 is `rag ask`'s
default k) and MRR@10.

End to end: ``--asks`` questions through ``genzoo.tasks.rag.ask`` with the model folder given (its context
bounds the prompt), timing retrieval + prompt + generation, and recording each answer. A small
GPT trained for minutes on pydocs writes pydocs-like text, not answers: the figure is the
pipeline's cost and the sources it cites, not answer quality.
Results: results/store/rag_pydocs.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "store"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="genzoo text run or HF folder for the end-to-end asks")
    ap.add_argument("--asks", type=int, default=10)
    ap.add_argument("--chunk-chars", type=int, default=1000)
    ap.add_argument("--overlap", type=int, default=150)
    ap.add_argument("--keyword-only", action="store_true", help="no vectors (fast; for chunk-size sweeps)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from pydoc_data.topics import topics

    from genzoo.store import rag
    from genzoo.store.api import Store
    from genzoo.tasks import rag as rag_task
    from genzoo.tasks.encoders import MiniLMEncoder

    work = Path(tempfile.mkdtemp(prefix="rag-pydocs-"))
    folder = work / "topics"
    folder.mkdir()
    names = sorted(topics)
    for i, name in enumerate(names):
        (folder / f"{i:04d}.txt").write_text(topics[name])
    store = Store.open(work / "store.db", encoder=None if args.keyword_only else MiniLMEncoder(), redact=False)
    t = time.perf_counter()
    report = rag.index_paths(store, [folder], chunk_chars=args.chunk_chars, overlap=args.overlap)
    index_s = time.perf_counter() - t
    result = {"documents": report.documents, "chunks": report.chunks, "duplicate_chunks": report.duplicate_chunks,
              "embedded": report.embedded, "index_s": round(index_s, 1), "chunk_chars": args.chunk_chars, "overlap": args.overlap}
    print("indexed", result, flush=True)

    by_uri: dict[str, set[int]] = {}
    for r in store.backend.rows("SELECT d.uri, COALESCE(c.duplicate_of, c.id) AS cid FROM chunks c JOIN documents d ON d.id = c.document_id"):
        by_uri.setdefault(r["uri"], set()).add(r["cid"])
    questions = []
    for i, name in enumerate(names):
        words = " ".join(re.split(r"[-_]", name)).strip()
        if re.search(r"[a-z]", words):
            questions.append((f"What is {words} in Python?", by_uri[str((folder / f'{i:04d}.txt').resolve())]))
    result["questions"] = len(questions)
    modes = ("keyword",) if args.keyword_only else ("keyword", "vector", "hybrid")
    result["retrieval"] = {}
    for mode in modes:
        hit1 = hit4 = rr = 0.0
        times = []
        vectors = rag.ChunkVectors()
        for q, answer in questions:
            t = time.perf_counter()
            got = [s.chunk_id for s in rag.retrieve(store, q, k=10, mode=mode, vectors=vectors)]
            times.append(time.perf_counter() - t)
            ranks = [r for r, cid in enumerate(got, 1) if cid in answer]
            hit1 += bool(ranks and ranks[0] == 1)
            hit4 += bool(ranks and ranks[0] <= 4)
            rr += 1 / ranks[0] if ranks else 0.0
        n = len(questions)
        result["retrieval"][mode] = {"hit@1": round(hit1 / n, 3), "hit@4": round(hit4 / n, 3), "mrr@10": round(rr / n, 3),
                                     "p50_ms": round(1000 * statistics.median(times), 1)}
        print(mode, result["retrieval"][mode], flush=True)

    if args.model is not None and not args.keyword_only:
        from genzoo.tasks.textgen import load_text_model

        loaded = load_text_model(args.model)
        timings, used, hits, example = [], [], 0, None
        for q, answer in questions[: args.asks]:
            t = time.perf_counter()
            a = rag_task.ask(store, q, args.model, k=4, max_tokens=48, loaded=loaded)
            timings.append(time.perf_counter() - t)
            used.append(len(a.sources))
            hits += any(s.chunk_id in answer for s in a.sources)
            example = example or {"question": q, "answer": a.text, "sources": [s.where for s in a.sources], "prompt_chars": len(a.prompt)}
        result["ask"] = {"model": str(args.model), "context": int(loaded[0].config.context), "asks": len(timings),
                         "p50_s": round(statistics.median(timings), 2), "max_s": round(max(timings), 2),
                         "mean_sources_in_prompt": round(statistics.fmean(used), 2), "answer_source_in_prompt": hits / len(timings),
                         "example": example, "recorded": store.backend.count("generations")}
        print("ask", json.dumps(result["ask"], indent=2), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = "" if not args.keyword_only else f"_keyword_{args.chunk_chars}"
    (OUT / f"rag_pydocs{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

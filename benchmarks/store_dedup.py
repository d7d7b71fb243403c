"""Dedup of stored generations (``Store.duplicates``): time over N stored texts and images, and how
the image default (cosine 0.99 of digits-evaluator features) splits the digits test images.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/store_dedup.py --n 10000 --out benchmarks/results/store_dedup.json

Texts: N pydocs-like records built from pydocs paragraphs (every 10th a verbatim copy of an earlier
one, every 10th+5 the same with one word changed), recorded without vectors. Images: the 1797 digits
(all splits) with their real evaluator features, plus 100 exact copies.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from genzoo.data import load_dataset
    from genzoo.data.text import load_corpus
    from genzoo.store.api import Store
    from genzoo.tasks.encoders import DigitsImageEncoder
    from genzoo.store.records import NewGeneration

    paragraphs = [p.strip() for d in load_corpus("pydocs", "train").documents for p in d.split("\n\n") if len(p.split()) >= 12]
    rng = np.random.default_rng(0)
    texts = []
    for i in range(args.n):
        if i % 10 == 0 and i:
            texts.append(texts[int(rng.integers(0, i))])
        elif i % 10 == 5:
            words = texts[int(rng.integers(0, i))].split()
            words[int(rng.integers(0, len(words)))] = "CHANGED"
            texts.append(" ".join(words))
        else:
            texts.append(f"{paragraphs[i % len(paragraphs)]} (#{i})")
    x = np.concatenate([load_dataset("digits", s).x.numpy() for s in ("train", "val", "test")]).astype(np.int16)
    feats = DigitsImageEncoder().encode(x)
    report = {"texts": args.n, "images": len(x) + 100}
    with tempfile.TemporaryDirectory() as tmp:
        with Store.open(Path(tmp) / "s.db", encoder=None, redact=False) as s:
            t = time.perf_counter()
            for lo in range(0, args.n, 1000):
                s.record_many([NewGeneration(kind="text", text=tx) for tx in texts[lo:lo + 1000]])
            report["text_ingest_s"] = round(time.perf_counter() - t, 2)
            items = [NewGeneration(kind="image", content=x[i].tobytes(), embedding=feats[i], space="digits-cnn-64")
                     for i in range(len(x))]
            items += [NewGeneration(kind="image", content=x[i].tobytes(), embedding=feats[i], space="digits-cnn-64")
                      for i in range(0, 1000, 10)]
            s.record_many(items)
            t = time.perf_counter()
            r = s.duplicates("text")
            report["text"] = {k: r[k] for k in ("generations", "exact_duplicates", "near_duplicates", "seconds")}
            report["text"]["wall_s"] = round(time.perf_counter() - t, 2)
            for threshold in (0.999, 0.998, 0.995, 0.99):
                t = time.perf_counter()
                r = s.duplicates("image", threshold=threshold)
                report[f"image@{threshold}"] = {k: r[k] for k in ("generations", "exact_duplicates", "near_duplicates", "seconds")}
                report[f"image@{threshold}"]["wall_s"] = round(time.perf_counter() - t, 2)
    print(json.dumps(report, indent=1))
    if args.out:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1) + "\n")
        tmp.replace(args.out)


if __name__ == "__main__":
    main()

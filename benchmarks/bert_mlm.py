"""BERT masked-token accuracy on held-out pydocs, against a unigram baseline and the untrained model.

Trains genzoo's BERT (masked-LM, 15% with 80/10/10) on the pydocs training split for a time budget,
unless the run folder already holds a trained run; then hides 15% of the tokens of every window of the
test split behind [MASK] (the same positions for every model: a generator seeded with --seed) and
reports, on those positions:

* accuracy of the argmax prediction and cross-entropy (nats/token) of the trained model;
* the same for the untrained model (same config and seed, no step taken);
* the unigram baseline: always the training split's most frequent token (accuracy), and the
  training split's token frequencies (add-one smoothed) as the distribution (cross-entropy).

Writes JSON and a PNG bar chart beside it, and a few ``fill`` examples. ``--minilm``: instead, genzoo's
all-MiniLM-L6-v2 embeddings against sentence-transformers' (cosine, load and encode time).

Run (1 thread, in the background; defaults: char tokens, 4 x 64, context 32, lr 2e-3):
  OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/bert_mlm.py --minutes 10 --run runs/bert-pydocs-10min \
      > runs/bert_mlm.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from genzoo.core.atomic import write_atomic_file, write_atomic_with

# short enough for a context of 32 characters; each [MASK] hides one token (one character with char tokens)
EXAMPLES = ["def f(x): [MASK]eturn x", "for i in [MASK]ange(10):", "the with stat[MASK]ment", "an instance of a cl[MASK]ss"]


def unigram_baseline(train_ids: torch.Tensor, targets: torch.Tensor, vocab: int) -> dict:
    counts = torch.bincount(train_ids, minlength=vocab).double() + 1.0  # add-one: no target gets probability 0
    logp = (counts / counts.sum()).log()
    top = int(counts.argmax())
    return {"accuracy": float((targets == top).double().mean()), "nats_per_token": float(-logp[targets].mean()),
            "most_frequent_token": top}


def bar_chart(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, title in ((axes[0], "accuracy", "masked-token accuracy (higher is better)"),
                           (axes[1], "nats_per_token", "cross-entropy, nats/token (lower is better)")):
        values = [rows[n][key] for n in names]
        ax.bar(names, values, color=["#999999", "#cc8844", "#3366aa"][: len(names)])
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.suptitle("BERT on held-out pydocs (15% of tokens masked)", fontsize=10)
    fig.tight_layout()
    write_atomic_with(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def minilm_check(out: Path) -> None:
    """genzoo's all-MiniLM-L6-v2 against sentence-transformers on the pydocs test documents (first 400
    characters each, plus the texts below): cosine of the vectors, load time, encode time (best of 2)."""
    import numpy as np

    from genzoo.data.text import load_corpus

    texts = [d[:400] for d in load_corpus("pydocs", "test").documents] + [
        "", " ", "?", "Ünïcödé ☃ 日本語のテキスト 🙂", "word " * 400, "[MASK] [CLS] literal specials"]
    t = time.perf_counter()
    from genzoo.models.sentence_encoder import SentenceEncoder
    from genzoo.tasks.encoders import minilm_folder

    ours = SentenceEncoder.from_folder(minilm_folder(), batch_size=64)
    load_genzoo = time.perf_counter() - t
    t = time.perf_counter()
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_folder()), device="cpu")
    load_st = time.perf_counter() - t
    times = {"genzoo": [], "sentence_transformers": []}
    for _ in range(2):
        t = time.perf_counter()
        a = ours.encode(texts)
        times["genzoo"].append(time.perf_counter() - t)
        t = time.perf_counter()
        b = st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        times["sentence_transformers"].append(time.perf_counter() - t)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    result = {"texts": len(texts), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
              "max_abs_diff": float(np.abs(a - b).max()), "load_seconds": {"genzoo": load_genzoo, "sentence_transformers": load_st},
              "encode_seconds_best_of_2": {k: min(v) for k, v in times.items()}, "load_average": os.getloadavg()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/bert-pydocs-10min"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--tokenizer", default="char")
    ap.add_argument("--vocab-size", type=int, default=None)
    # A short context and a small model: MLM sits on the unigram plateau (predict the most frequent token
    # everywhere) until attention learns relative positions, and that takes fewer steps for fewer
    # positions. Measured on pydocs chars (2 x 64, lr 2e-3, 1 thread): context 16 left the plateau after
    # ~1000 steps; context 64 was still on it at 1750 steps, context 128 (4 x 128, BPE) at 400.
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--context", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bert_mlm.json"))
    ap.add_argument("--minilm", action="store_true", help="only the all-MiniLM-L6-v2 parity and speed check")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.minilm:
        minilm_check(args.out.with_name("bert_minilm_parity.json"))
        return

    from genzoo import api
    from genzoo.runs.checkpoint import load_model
    from genzoo.data import load_dataset

    started = time.time()
    if not (args.run / "checkpoint").is_dir():
        api.train("bert", "pydocs", out=args.run, minutes=args.minutes, tokenizer=args.tokenizer,
                  vocab_size=args.vocab_size, seed=args.seed, progress=False, lr=args.lr,
                  model_overrides={"layers": args.layers, "width": args.width, "heads": 4, "context": args.context})
    train_seconds = time.time() - started
    model = load_model(args.run)
    tok = model.tokenizer
    train = load_dataset("pydocs", "train", tokenizer=tok)
    test = model.prepare_data(load_dataset("pydocs", "test", tokenizer=tok))
    windows = test.eval_examples()[0]

    trained = model.masked_token_accuracy(windows, seed=args.seed)
    torch.manual_seed(args.seed)
    untrained_model = type(model)(model.config).eval()
    untrained = untrained_model.masked_token_accuracy(windows, seed=args.seed)
    assert torch.equal(trained["targets"], untrained["targets"])  # the very same positions
    unigram = unigram_baseline(train.x, trained.pop("targets"), model.config.vocab_size)
    untrained.pop("targets")

    metrics = args.run / "metrics.jsonl"
    logged = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    last = next((m for m in reversed(logged) if m.get("event") == "train"), {})
    info = {"steps": last.get("step"), "train_seconds": last.get("time")}
    result = {
        "run": str(args.run), "tokenizer": tok.kind, "vocab_size": model.config.vocab_size,
        "config": {k: v for k, v in model.config.to_dict().items() if k != "data"},
        "parameters": model.num_parameters(), "test_windows": len(windows), "masked_positions": trained["masked"],
        "train_wall_seconds_this_invocation": round(train_seconds, 1), "last_logged_train_step": info,
        "unigram": unigram, "untrained": untrained, "trained": trained,
        "fill_examples": model.fill([e for e in EXAMPLES if len(model.encode_texts([e])[0]) <= model.config.context], top_k=3),
        "uniform_nats_per_token": math.log(model.config.vocab_size - 1),
    }
    write_atomic_file(args.out, json.dumps(result, indent=2))
    bar_chart({"unigram": unigram, "untrained": untrained, "trained": trained}, args.out.with_suffix(".png"))
    print(json.dumps({k: result[k] for k in ("unigram", "untrained", "trained", "masked_positions", "parameters")}, indent=2))
    for r in result["fill_examples"]:
        print(r["text"], r["masks"])


if __name__ == "__main__":
    main()

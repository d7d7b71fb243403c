"""``evaluate`` for text models: held-out bits per character and per token, the compressors'
conditional bits per character on the same documents (the reference line), and samples scored
for diversity and, on code, for parsing.

Bits per character: the model's summed NLL over the held-out token stream's windows (each token
after the first predicted once) divided by the characters those tokens cover, taken as the
split's characters in proportion to the tokens scored (the few tokens past the last full window,
under one window in total, are left out of both).
"""

from __future__ import annotations

import time

import torch

from genzoo.eval.likelihood import LN2, per_example_nll
from genzoo.eval.text import compressor_bits_per_char, distinct_n, parse_stats

SAMPLE_TOKENS = 128  # tokens per sample (at most the model's context)
MAX_TEXT_SAMPLES = 64  # text samples are slow to draw on a CPU; this many are enough for distinct-n and parse share


def text_likelihood_metrics(model, test, *, batch_size: int = 64, say=lambda *_: None) -> dict:
    windows = model.prepare_data(test).eval_examples()[0]
    start = time.perf_counter()
    nll = per_example_nll(model, windows, batch_size=batch_size, progress=lambda i, n: say(f"log_prob {i}/{n}"))
    total = float(nll.sum())
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    chars = test.meta["characters"] * tokens / max(1, len(test.x) - 1)
    return {
        "likelihood": str(getattr(model, "likelihood", None) or "unknown"),
        "bits_per_token": total / tokens / LN2,
        "bits_per_char": total / chars / LN2,
        "perplexity_per_token": float(torch.tensor(total / tokens).exp()),
        "test_tokens": tokens,
        "nll_seconds": time.perf_counter() - start,
    }


def compressor_metrics(data_name: str, say=lambda *_: None) -> dict:
    """bz2 and xz bits per character of the test documents given the training documents as context."""
    from genzoo.data.text import load_corpus

    train, test = load_corpus(data_name, "train").text(), load_corpus(data_name, "test").text()
    out = {}
    for method in ("bz2", "xz"):
        say(f"{method} reference")
        out[f"{method}_bits_per_char"] = compressor_bits_per_char(train, test, method)
    return out


def text_sample_metrics(model, data_name: str, *, n: int, seed: int, options: dict | None, say=lambda *_: None) -> dict:
    tokenizer = model.tokenizer
    n = min(n, MAX_TEXT_SAMPLES)
    options = {"max_tokens": min(SAMPLE_TOKENS, model.config.context), **(options or {})}
    g = torch.Generator().manual_seed(seed)
    say(f"{n} samples of {options['max_tokens']} tokens")
    start = time.perf_counter()
    ids = model.sample(n, generator=g, **options)
    seconds = time.perf_counter() - start
    eos = tokenizer.eos_id
    texts = []
    for row in ids.tolist():
        row = row[: row.index(eos)] if eos in row else row  # a sample ends where its document does
        texts.append(tokenizer.decode(row))
    out = {"n_samples": n, "tokens_per_second": ids.numel() / max(seconds, 1e-9),
           "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), "sample_text": texts[0][:300]}
    if data_name == "pycode":
        stats = parse_stats(texts)
        out.update(parse_share=stats["parse_share"], parse_strict_share=stats["strict_share"])
    return out

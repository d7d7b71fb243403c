"""T5 on docsig: span-corruption pretraining on pycode, then docstring -> signature fine-tuning.

1. A tokenizer is trained on the docsig training pairs (the stdlib's docstrings and signature
   lines): byte-level BPE of ``--vocab-size`` ids by default, or ``--tokenizer char``.
2. Span corruption (15%, mean span 3) on windows of ``--window`` tokens of pycode's training
   modules for ``--pretrain-steps`` (0: none). The held-out loss (pycode val modules, the same
   corruption for every model: a generator seeded with --seed) is measured untrained and after.
3. Supervised fine-tuning on docsig train pairs for ``--finetune-steps``.
   Both phases: AdamW, linear warm-up over ``--warmup`` steps, then cosine decay to 0 (a fixed
   step count, not minutes, so the schedule knows its end and a busy machine changes only the time).
4. Greedy decoding (KV cache) on every held-out docsig test pair: exact match and character F1,
   against two baselines (the most frequent training signature; the docstring's first word as a
   method name, ``def word(self):``) and the untrained model.

Why BPE (benchmarks/README.md, T5 section): with characters, 15 minutes of CPU (797 steps at lr
2e-3 constant) left the model at the context-free plateau, greedy output ``def ____...``; a
signature is 32 characters but 14 BPE tokens (a docstring 108 characters, 39 tokens), so each step
is about 3x cheaper and the decoder predicts whole pieces (``def``, ``(self``, ``):``).

Writes benchmarks/results/t5_docsig.json and t5_docsig.png (loss curves) with a few examples.

``--parity``: instead, the largest logit difference between transformers' T5ForConditionalGeneration
and genzoo's T5 loaded from the saved folder, on tiny random v1.0 (ReLU, tied, scaled) and v1.1
(gated GELU, unscaled) models with a padded input row (the setting of tests/test_t5.py).

Run (1 thread, in the background):
  OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/t5_docsig.py --finetune-steps 900 > runs/t5_docsig.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import torch

from genzoo.data.docsig import load_pairs, score
from genzoo.data.text import load_corpus
from genzoo.data.tokenizer import TextTokenizer
from genzoo.models.t5 import T5, T5Config, pad_labels, pad_rows
from genzoo.train.schedule import lr_multiplier

RESULTS = Path(__file__).parent / "results"


def windows_of(docs: list[str], tok, window: int, limit_chars: int) -> torch.Tensor:
    ids: list[int] = []
    for d in docs:
        ids += tok.encode(d) + [tok.eos_id]
        if len(ids) >= limit_chars:
            break
    n = len(ids) // window
    return torch.tensor(ids[: n * window]).view(n, window)


@torch.no_grad()
def heldout_span_loss(model: T5, windows: torch.Tensor, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    model.eval()
    losses = [float(model.span_corruption_loss(windows[s : s + 64], g)) for s in range(0, len(windows), 64)]
    return sum(losses) / len(losses)


def first_word_signature(docstring: str) -> str:
    """Baseline: the docstring's first word as a method name (``Return the size...`` -> ``def return(self):``)."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", docstring)
    return f"def {words[0].lower() if words else 'f'}(self):"


def train_steps(model: T5, steps: int, batch_loss, args, curve: list, phase: str) -> float:
    """``steps`` AdamW steps of ``batch_loss()``, warm-up then cosine to 0; returns the seconds taken."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    start = time.time()
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_multiplier(step, steps, min(args.warmup, steps // 2), "cosine", 0.0)
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 50 == 0:
            curve.append((phase, step + 1, loss.item()))
            print(f"{phase} step {step + 1} loss {loss.item():.3f} ({time.time() - start:.0f}s)", flush=True)
    model.eval()
    return time.time() - start


@torch.no_grad()
def heldout_pair_loss(model: T5, src: list[list[int]], tgt: list[list[int]], batch: int = 64) -> float:
    """Teacher-forced cross-entropy (nats/token, each pair weighted equally) of held-out targets."""
    model.eval()
    total = 0.0
    for s in range(0, len(src), batch):
        ids, mask = pad_rows(src[s : s + batch], model.config.pad_token_id)
        total += float(model.seq2seq_loss(ids, pad_labels(tgt[s : s + batch]), mask)) * len(src[s : s + batch])
    return total / len(src)


@torch.no_grad()
def evaluate_pairs(model: T5, pairs, max_input: int, max_new: int, batch: int = 64) -> tuple[dict, list[str]]:
    preds = []
    for s in range(0, len(pairs), batch):
        preds += model.generate_text([p[0] for p in pairs[s : s + batch]], max_input_tokens=max_input, max_new_tokens=max_new)
    return score(preds, [p[1] for p in pairs]), preds


def parity() -> dict:
    import tempfile

    import transformers

    from genzoo.models.hf.t5 import load_hf_t5

    out = {}
    for name, ffn, tie in (("v1.0-relu-tied", "relu", True), ("v1.1-gated-gelu", "gated-gelu", False)):
        torch.manual_seed(0)
        cfg = transformers.T5Config(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3,
                                    num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                    feed_forward_proj=ffn, tie_word_embeddings=tie, dropout_rate=0.0)
        hf = transformers.T5ForConditionalGeneration(cfg).eval()
        with torch.no_grad():
            for pname, p in hf.named_parameters():
                p.copy_(1 + 0.2 * torch.randn_like(p) if "layer_norm" in pname else 0.3 * torch.randn_like(p))
        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d)
            ours = load_hf_t5(d)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(2, 120, (2, 30), generator=g)
        mask = torch.ones_like(ids)
        mask[1, 21:] = 0
        dec = torch.randint(2, 120, (2, 25), generator=g)
        with torch.no_grad():
            want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
            got = ours(ids, dec, mask.bool())
        out[name] = {"max_abs_diff": float((want - got).abs().max()), "logit_std": float(want.std())}
    print(json.dumps(out, indent=2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrain-steps", type=int, default=0)
    ap.add_argument("--finetune-steps", type=int, default=900)
    ap.add_argument("--tokenizer", choices=("bpe", "char"), default="bpe")
    ap.add_argument("--vocab-size", type=int, default=1024, help="bpe: vocabulary size; char: a cap on the alphabet")
    ap.add_argument("--max-input", type=int, default=64, help="input tokens kept (docstring start), eos included")
    ap.add_argument("--max-target", type=int, default=48, help="target tokens kept, eos included; also the decoding limit")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="T5Config overrides, key=value (numbers)")
    ap.add_argument("--out", default=str(RESULTS / "t5_docsig.json"))
    ap.add_argument("--parity", action="store_true", help="only the Hugging Face logits parity check")
    args = ap.parse_args()
    if args.parity:
        parity()
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(args.seed)
    t0 = time.time()

    train_pairs, test_pairs = load_pairs("train"), load_pairs("test")
    tok = TextTokenizer.train([a + "\n" + b for a, b in train_pairs], kind=args.tokenizer, vocab_size=args.vocab_size)
    pre_steps = args.pretrain_steps
    train_windows = val_windows = torch.zeros(0, args.window, dtype=torch.long)
    if pre_steps:  # span corruption only: tokenizing pycode takes a while
        code_train = load_corpus("pycode", "train").documents
        code_val = load_corpus("pycode", "val").documents
        random.Random(args.seed).shuffle(code_train)
        train_windows = windows_of(code_train, tok, args.window, 4_000_000)
        val_windows = windows_of(code_val, tok, args.window, 64 * 512)[:512]
    print(f"data: {len(train_pairs)} train / {len(test_pairs)} test pairs, {len(train_windows)} code windows "
          f"({time.time() - t0:.0f}s)", flush=True)

    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}  # numbers: layers=2, dropout=0.1
    sizes = {"width": 128, "d_kv": 32, "d_ff": 512, "layers": 3, "heads": 4, "num_buckets": 32, "max_distance": 128,
             "num_sentinels": 32, **overrides}  # --set replaces these
    cfg = T5Config(data={"name": "docsig", "kind": "pairs", "vocab_size": tok.vocab_size}, ffn="gated-gelu",
                   tie_lm_head=True, eos_token_id=tok.eos_id, **sizes)
    model = T5(cfg)
    model.tokenizer = tok
    params = sum(p.numel() for p in model.parameters())
    untrained_span = heldout_span_loss(model, val_windows, args.seed) if pre_steps else None
    untrained_eval, _ = evaluate_pairs(model, test_pairs[:64], args.max_input, args.max_target)
    eos = tok.eos_id
    test_src = [r[: args.max_input - 1] + [eos] for r in tok.encode_batch([p[0] for p in test_pairs])]
    test_tgt = [r[: args.max_target - 1] + [eos] for r in tok.encode_batch([p[1] for p in test_pairs])]
    untrained_eval["heldout_loss_all_test"] = heldout_pair_loss(model, test_src, test_tgt)
    print(f"untrained: held-out span loss {untrained_span}, docsig on 64 {untrained_eval}", flush=True)

    g = torch.Generator().manual_seed(args.seed)
    curve: list = []

    def pretrain_batch():
        return model.span_corruption_loss(train_windows[torch.randint(len(train_windows), (args.batch_size,), generator=g)], g)

    pre_s = train_steps(model, pre_steps, pretrain_batch, args, curve, "pretrain") if pre_steps else 0.0
    trained_span = heldout_span_loss(model, val_windows, args.seed) if pre_steps else None
    print(f"pretrained {pre_steps} steps in {pre_s:.0f}s: held-out span loss {trained_span}", flush=True)

    eos = tok.eos_id
    src = [r[: args.max_input - 1] + [eos] for r in tok.encode_batch([p[0] for p in train_pairs])]
    tgt = [r[: args.max_target - 1] + [eos] for r in tok.encode_batch([p[1] for p in train_pairs])]

    def finetune_batch():
        idx = torch.randint(len(train_pairs), (args.batch_size,), generator=g).tolist()
        ids, mask = pad_rows([src[i] for i in idx], model.config.pad_token_id)
        return model.seq2seq_loss(ids, pad_labels([tgt[i] for i in idx]), mask)

    ft_steps = args.finetune_steps
    ft_s = train_steps(model, ft_steps, finetune_batch, args, curve, "finetune")
    model.eval()
    t_eval = time.time()
    trained_eval, preds = evaluate_pairs(model, test_pairs, args.max_input, args.max_target)
    trained_eval["heldout_loss"] = heldout_pair_loss(model, test_src, test_tgt)  # nats/token, teacher-forced
    trained_eval["train_loss"] = heldout_pair_loss(model, src[:: len(src) // 285], tgt[:: len(tgt) // 285])  # ~285 train pairs, same measure
    eval_s = time.time() - t_eval
    constant = Counter(t for _, t in train_pairs).most_common(1)[0][0]
    baseline = score([constant] * len(test_pairs), [p[1] for p in test_pairs])
    copy_baseline = score([first_word_signature(p[0]) for p in test_pairs], [p[1] for p in test_pairs])
    print(f"docsig test: trained {trained_eval}, constant {constant!r} -> {baseline}, first word -> {copy_baseline}", flush=True)

    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/t5_docsig.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("set", "out", "parity")) +
            (" --set " + " ".join(args.set) if args.set else ""),
        "config": {k: v for k, v in model.config.to_dict().items() if k != "data"}, "parameters": params,
        "tokenizer": {"kind": args.tokenizer, "vocab_size": tok.vocab_size},
        "data": {"train_pairs": len(train_pairs), "test_pairs": len(test_pairs), "code_windows": len(train_windows),
                 "window": args.window, "val_windows": len(val_windows)},
        "span_corruption": {"heldout_loss_untrained": untrained_span, "heldout_loss_pretrained": trained_span,
                            "steps": pre_steps, "seconds": round(pre_s, 1)},
        "finetune": {"steps": ft_steps, "seconds": round(ft_s, 1), "batch_size": args.batch_size, "lr": args.lr,
                     "warmup": args.warmup, "schedule": "cosine to 0", "max_input": args.max_input, "max_target": args.max_target},
        "docsig_test": {"trained": trained_eval, "untrained_first64": untrained_eval,
                        "constant_baseline": {**baseline, "prediction": constant},
                        "first_word_baseline": {**copy_baseline, "prediction": "def <first word of the docstring>(self):"},
                        "greedy_eval_seconds": round(eval_s, 1)},
        "examples": [{"input": p[0][:120], "target": p[1], "prediction": y} for p, y in list(zip(test_pairs, preds))[::24]],
        "torch_threads": torch.get_num_threads(), "wall_seconds": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    plot(curve, untrained_span, trained_span, out.with_suffix(".png"))
    print(json.dumps(result["docsig_test"], indent=2))


def plot(curve, untrained: float | None, trained: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))  # the left panel stays empty without pretraining
    for ax, phase, title in ((axes[0], "pretrain", "span corruption (pycode), train loss"),
                             (axes[1], "finetune", "docstring -> signature, train loss")):
        pts = [(s, v) for p, s, v in curve if p == phase]
        if pts:
            ax.plot(*zip(*pts), color="#3366aa")
        if phase == "pretrain" and trained is not None:
            ax.axhline(untrained, color="#999999", ls="--", label=f"held-out, untrained {untrained:.2f}")
            ax.axhline(trained, color="#cc8844", ls="--", label=f"held-out, pretrained {trained:.2f}")
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel("nats/token")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
